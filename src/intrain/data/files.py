"""Load problems from local files: ``.jsonl``, ``.json`` (a list of objects), ``.parquet``,
``.csv``.  Column mapping is shared with the HF loader (:func:`rows_to_problems`)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from .problem import DataError, Problem, rows_to_problems

__all__ = ["SUPPORTED_EXTENSIONS", "load_file", "read_records", "read_utf8_text"]

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")


def read_utf8_text(path: Path) -> str:
    """The file as text, decoded as UTF-8 (a leading byte-order mark is dropped).

    Read whole, so that a byte that is not UTF-8 is reported by its offset in the file and its line,
    rather than as a UnicodeDecodeError about a buffer position.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = start + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{path}: line {line}: byte 0x{data[offset]:02x} at offset {offset} is not UTF-8; save the file as UTF-8"
        ) from None


def _lines(text: str) -> list[str]:
    # Universal newlines, as text-mode files split them. Not str.splitlines: that also splits on
    # U+2028 and friends, which may sit unescaped inside a JSON string.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], None]:
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(_lines(read_utf8_text(path)), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
        records.append(obj)
    return records, None


def _read_json(path: Path) -> tuple[list[dict[str, Any]], None]:
    text = read_utf8_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects at the top level, got {type(data).__name__}")
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise DataError(f"{path}: element {i} is {type(obj).__name__}, expected a JSON object")
    return data, None


def _read_parquet(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError with multi-line text
        raise DataError(f"{path}: cannot read parquet file ({type(e).__name__}: {e})") from None
    return table.to_pylist(), list(table.column_names)


def _read_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    # Reference solutions can be long; lift the default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    records: list[dict[str, Any]] = []
    # newline="": the csv module splits rows itself, keeping newlines inside quoted fields.
    with io.StringIO(read_utf8_text(path), newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        try:
            for row in reader:
                if None in row:
                    raise DataError(
                        f"{path}: line {reader.line_num}: more fields than the {len(header)} header columns"
                    )
                records.append(row)
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({e})") from None
    return records, header


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
    ".csv": _read_csv,
}


def read_records(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[str] | None]:
    """Read raw records and (when the format has a schema/header) the column names."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _READERS:
        raise DataError(
            f"{p}: unsupported file extension '{p.suffix or '(none)'}' (supported: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    return _READERS[ext](p)


def load_file(
    path: str | os.PathLike[str],
    columns: dict[str, str] | None = None,
    source: str | None = None,
) -> list[Problem]:
    """Load problems from a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file.

    ``columns`` maps our field -> the file's column (defaults: id, problem, answer,
    reference_solution with fallback solution, source).  Without an id column ids are
    ``f"{stem}-{row_index}"``; without a source value the source is ``source`` or the file stem.
    Rows are not validated here: run :func:`validate_problems` afterwards.
    """
    p = Path(path)
    records, header = read_records(p)
    stem = p.stem
    return rows_to_problems(
        records,
        columns,
        default_source=source or stem,
        id_prefix=stem,
        origin=str(p),
        available_columns=header,
    )

"""The problem record shared by every data source, plus validation and column mapping.

Every loader (local files, HF datasets, CHAMP, the arithmetic generator) produces
:class:`Problem` objects.  Loaders do *not* drop or reject bad rows themselves; callers run
:func:`validate_problems` with the configured ``on_invalid`` policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "DEFAULT_COLUMNS",
    "FIELDS",
    "DataError",
    "Problem",
    "format_ids",
    "rows_to_problems",
    "to_text",
    "validate_problems",
]


@dataclass(frozen=True)
class Problem:
    """One training/evaluation problem.

    ``reference_solution`` may be empty: only some stages need it (they check).
    ``answer`` is always a string (numbers from the source are converted, ``42`` -> ``"42"``).
    """

    id: str
    problem: str
    answer: str
    reference_solution: str = ""
    source: str = ""


class DataError(ValueError):
    """A data problem the user must fix.  The message is one line and names the
    file/dataset, the offending row ids or line number, and the field."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


#: Our field names, in Problem order.
FIELDS: tuple[str, ...] = ("id", "problem", "answer", "reference_solution", "source")

#: Default mapping our field -> the source's column name.  ``reference_solution`` falls back to
#: ``solution`` (see :data:`_FALLBACK_COLUMNS`).  Suits ``CMU-AIRe/InT-hard-set``.
DEFAULT_COLUMNS: dict[str, str] = {
    "id": "id",
    "problem": "problem",
    "answer": "answer",
    "reference_solution": "reference_solution",
    "source": "source",
}

_FALLBACK_COLUMNS: dict[str, tuple[str, ...]] = {"reference_solution": ("solution",)}
_REQUIRED_FIELDS = ("problem", "answer")

_MAX_LISTED_IDS = 10


def format_ids(ids: list[str], limit: int = _MAX_LISTED_IDS) -> str:
    """``"a, b, c"`` or ``"a, b, ... (25 in total)"`` for error messages."""
    shown = ", ".join(str(i) for i in ids[:limit])
    if len(ids) > limit:
        return f"{shown}, ... ({len(ids)} in total)"
    return f"{shown} ({len(ids)} in total)" if len(ids) > 1 else shown


def to_text(value: Any) -> str:
    """Convert a cell value to text.

    ``None``/NaN -> ``""``; integral numbers print without a decimal point (``42``, ``42.0`` ->
    ``"42"``); other floats use ``repr``-style shortest form; lists of strings (e.g. solution
    steps) are joined by blank lines; dicts become JSON.  Strings are stripped.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "" if math.isnan(value) else str(value)
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(int(value))
        return str(value.normalize())
    if isinstance(value, (list, tuple)):
        parts = [to_text(v) for v in value]
        return "\n\n".join(p for p in parts if p)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    # numpy scalars and the like
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return to_text(item())
        except Exception:  # pragma: no cover - defensive
            pass
    return str(value).strip()


def _resolve_columns(
    columns: Mapping[str, str] | None,
    available: Collection[str] | None,
    origin: str,
) -> tuple[dict[str, list[str]], set[str]]:
    """Return field -> candidate source columns (first non-empty wins) and the set of
    fields the user mapped explicitly."""
    columns = dict(columns or {})
    unknown = sorted(k for k in columns if k not in FIELDS)
    if unknown:
        raise DataError(
            f"{origin}: unknown field(s) in column mapping: {', '.join(unknown)} (known fields: {', '.join(FIELDS)})"
        )
    for k, v in columns.items():
        if not isinstance(v, str) or not v:
            raise DataError(f"{origin}: column mapping for field '{k}' must be a non-empty string")
    explicit = set(columns)
    resolved: dict[str, list[str]] = {}
    for field in FIELDS:
        if field in columns:
            resolved[field] = [columns[field]]
        else:
            resolved[field] = [DEFAULT_COLUMNS[field], *_FALLBACK_COLUMNS.get(field, ())]

    if available is not None:
        avail = set(available)
        for field in FIELDS:
            cands = resolved[field]
            present = [c for c in cands if c in avail]
            if field in explicit and not present:
                raise DataError(
                    f"{origin}: column '{cands[0]}' (mapped to field '{field}') not found; "
                    f"available columns: {', '.join(sorted(avail)) or '(none)'}"
                )
            if field in _REQUIRED_FIELDS and not present:
                raise DataError(
                    f"{origin}: required column '{cands[0]}' for field '{field}' not found; "
                    f"available columns: {', '.join(sorted(avail)) or '(none)'}; "
                    f"map it with columns={{'{field}': '<column>'}}"
                )
            resolved[field] = present
    return resolved, explicit


def rows_to_problems(
    records: Iterable[Mapping[str, Any]],
    columns: Mapping[str, str] | None,
    default_source: str,
    id_prefix: str,
    *,
    origin: str | None = None,
    available_columns: Collection[str] | None = None,
) -> list[Problem]:
    """Map raw records (dicts) onto :class:`Problem` using ``columns`` (our field -> column).

    * Fields not in ``columns`` use :data:`DEFAULT_COLUMNS`; ``reference_solution`` falls back
      to ``solution`` when the ``reference_solution`` column is absent or empty for a row.
    * A missing/empty id becomes ``f"{id_prefix}-{row_index}"`` (0-based row index).
    * A missing/empty source becomes ``default_source`` (a source column wins when present).
    * An explicitly mapped column, or the problem/answer column, that is absent from the data
      raises :class:`DataError` naming the column and ``origin``.  Absence is judged from
      ``available_columns`` when given (e.g. a parquet schema), else from the union of the
      records' keys (so an empty record list checks nothing).
    * Rows with an empty problem/answer are kept here; :func:`validate_problems` decides.
    """
    origin = origin or id_prefix
    recs = list(records)
    if available_columns is None and recs:
        seen: set[str] = set()
        for r in recs:
            if not isinstance(r, Mapping):
                raise DataError(f"{origin}: expected each row to be an object/mapping, got {type(r).__name__}")
            seen.update(str(k) for k in r)
        available_columns = seen
    resolved, _ = _resolve_columns(columns, available_columns, origin)

    out: list[Problem] = []
    for i, rec in enumerate(recs):
        if not isinstance(rec, Mapping):
            raise DataError(f"{origin}: row {i} is {type(rec).__name__}, expected an object/mapping")
        vals: dict[str, str] = {}
        for field in FIELDS:
            text = ""
            for col in resolved[field]:
                text = to_text(rec.get(col))
                if text:
                    break
            vals[field] = text
        if not vals["id"]:
            vals["id"] = f"{id_prefix}-{i}"
        if not vals["source"]:
            vals["source"] = default_source
        out.append(Problem(**vals))
    return out


def validate_problems(rows: Iterable[Problem], on_invalid: str, origin: str) -> tuple[list[Problem], list[str]]:
    """Check rows; return ``(valid_rows, skipped_ids)``.

    * Empty/missing ``problem`` or ``answer``: with ``on_invalid="error"`` raise
      :class:`DataError` naming ``origin``, the field(s) and the offending ids (first 10 and the
      count); with ``"skip"`` drop them and return their ids.
    * Duplicate ids always raise :class:`DataError`.
    * An empty ``reference_solution`` is allowed.
    """
    if on_invalid not in ("error", "skip"):
        raise DataError(f"{origin}: on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    rows = list(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.id] = counts.get(r.id, 0) + 1
    dups = [i for i, c in counts.items() if c > 1]
    if dups:
        raise DataError(f"{origin}: duplicate ids: {format_ids(dups)}")

    valid: list[Problem] = []
    bad_ids: list[str] = []
    bad_fields: set[str] = set()
    for r in rows:
        missing = [f for f in _REQUIRED_FIELDS if not (getattr(r, f) or "").strip()]
        if missing:
            bad_ids.append(r.id)
            bad_fields.update(missing)
        else:
            valid.append(r)
    if bad_ids and on_invalid == "error":
        fields = "/".join(f for f in _REQUIRED_FIELDS if f in bad_fields)
        raise DataError(
            f"{origin}: {len(bad_ids)} row(s) with empty or missing field '{fields}': "
            f"ids {format_ids(bad_ids)} (set on_invalid='skip' to drop them)"
        )
    return valid, bad_ids

"""Optional loader for CHAMP (``pip install champ-dataset``; MIT licence).

The package ships ``champ_dataset/dataset_files/v0.json``:

.. code-block:: text

    {"problems": {"P_Combinatorics_1": {
        "identifier": "P_Combinatorics_1", "category": "Combinatorics",
        "_raw_text": "... @@math@@ ...", "_text": "... math ...",
        "solution": {"steps": [{"_raw_text": "...", "_text": "...", "ch_idxs": [0]}, ...]},
        "_raw_answer": "239", "_answer": "239",
        "ch_list": [...],
        "fws_annotations": {"GPT-3.5|No C w/o H": {"text": "...", "start_idx": 10, "end_idx": 80,
                                                   "author": "..."}, ...},
        "conversations": {...}}, ...},
     "concepts": {...}, "hints": {...}}

``@@`` marks math spans in the ``_raw_*`` fields; the ``_text``/``_answer`` fields are the same
text without them.  We read the JSON directly (not through the package's classes, whose import
also needs ``natsort``), so only the file's location comes from the package.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import read_utf8_text
from .problem import DataError, Problem

__all__ = ["ChampAnnotation", "champ_dataset_path", "load_champ", "load_champ_annotations"]


def champ_dataset_path(version: str = "v0") -> Path:
    """Locate ``champ_dataset/dataset_files/{version}.json`` in the installed package."""
    spec = importlib.util.find_spec("champ_dataset")
    if spec is None or not spec.origin:
        raise DataError(
            "CHAMP: the 'champ-dataset' package is not installed (pip install champ-dataset), "
            "or pass the path to its dataset_files/v0.json"
        )
    p = Path(spec.origin).parent / "dataset_files" / f"{version}.json"
    if not p.is_file():
        raise DataError(f"CHAMP: {p} not found in the installed champ-dataset package (version '{version}')")
    return p


def _text(d: dict[str, Any], key: str) -> str:
    """``_text``-style field, falling back to ``_raw_text`` with the ``@@`` markers removed."""
    val = d.get(f"_{key}")
    if not isinstance(val, str):
        raw = d.get(f"_raw_{key}")
        val = raw.replace("@@", "") if isinstance(raw, str) else ""
    return val.strip()


def _read(path: str | os.PathLike[str] | None, version: str) -> tuple[Path, dict[str, Any]]:
    p = Path(path) if path is not None else champ_dataset_path(version)
    if not p.is_file():
        raise DataError(f"CHAMP: {p}: file not found")
    try:
        data = json.loads(read_utf8_text(p))
    except json.JSONDecodeError as e:
        raise DataError(f"CHAMP: {p}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("problems"), dict):
        raise DataError(f"CHAMP: {p}: expected an object with a 'problems' mapping (champ_dataset v0 layout)")
    return p, data


def load_champ(
    path: str | os.PathLike[str] | None = None,
    version: str = "v0",
    categories: list[str] | None = None,
) -> list[Problem]:
    """Load CHAMP problems.

    ``path`` defaults to the installed package's ``dataset_files/{version}.json``.
    id = CHAMP identifier (``P_Combinatorics_1``); reference_solution = the solution steps joined
    by blank lines; answer = the final answer text (``@@`` markers removed; often not a plain
    number, e.g. ``2^(n-1)``); source = ``"champ/{category}"``.  ``categories`` filters by
    category name (case-insensitive).
    """
    p, data = _read(path, version)
    wanted = {c.lower() for c in categories} if categories else None
    out: list[Problem] = []
    for key, rec in data["problems"].items():
        if not isinstance(rec, dict):
            raise DataError(f"CHAMP: {p}: problem {key} is {type(rec).__name__}, expected an object")
        category = str(rec.get("category") or "")
        if wanted is not None and category.lower() not in wanted:
            continue
        steps_raw = (rec.get("solution") or {}).get("steps") or []
        if not isinstance(steps_raw, list):
            raise DataError(f"CHAMP: {p}: problem {key}: field 'solution.steps' must be a list")
        steps = [_text(s, "text") for s in steps_raw if isinstance(s, dict)]
        out.append(
            Problem(
                id=str(rec.get("identifier") or key),
                problem=_text(rec, "text"),
                answer=_text(rec, "answer"),
                reference_solution="\n\n".join(s for s in steps if s),
                source=f"champ/{category}" if category else "champ",
            )
        )
    return out


@dataclass(frozen=True)
class ChampAnnotation:
    """A first-wrong-step annotation of a model solution.  ``start``/``end`` index into
    ``text`` (both ``None`` when the annotator found no mistake).

    No stage reads these yet; they are the human labels a proposer-scoring command will score
    first-error localisation against (kept and tested for that)."""

    problem_id: str
    model_key: str
    text: str
    start: int | None
    end: int | None
    author: str

    @property
    def wrong_step(self) -> str | None:
        return None if self.start is None else self.text[self.start : self.end]


def load_champ_annotations(path: str | os.PathLike[str] | None = None, version: str = "v0") -> list[ChampAnnotation]:
    """All ``fws_annotations`` (first-wrong-step labels of model solutions)."""
    p, data = _read(path, version)
    out: list[ChampAnnotation] = []
    for key, rec in data["problems"].items():
        pid = str((rec or {}).get("identifier") or key)
        for model_key, ann in ((rec or {}).get("fws_annotations") or {}).items():
            if not isinstance(ann, dict) or not isinstance(ann.get("text"), str):
                raise DataError(f"CHAMP: {p}: problem {pid}: annotation '{model_key}' lacks a 'text' string")
            start, end = ann.get("start_idx"), ann.get("end_idx")
            out.append(
                ChampAnnotation(
                    problem_id=pid,
                    model_key=str(model_key),
                    text=ann["text"],
                    start=start if isinstance(start, int) else None,
                    end=end if isinstance(end, int) else None,
                    author=str(ann.get("author") or ""),
                )
            )
    return out

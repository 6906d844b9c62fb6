"""Load problems from a Hugging Face dataset (hub name or a local path).

Defaults suit ``CMU-AIRe/InT-hard-set`` (columns ``problem``, ``answer``,
``reference_solution``/``solution``, ``source``; no id column, so ids are
``"InT-hard-set-train-{i}"``).

Local paths work too, which is how this is tested offline:

* a directory written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``
  (read with ``datasets.load_from_disk``);
* a directory of data files (``.parquet``/``.jsonl``/``.json``/``.csv``; file names such as
  ``train-*.parquet`` or ``data/train.jsonl`` define the splits) or a directory with a dataset
  README/loading config (read with ``datasets.load_dataset(path, subset, split=split)``);
* a single data file (read with the matching packaged builder, as split ``split``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .problem import DataError, Problem, rows_to_problems

__all__ = ["load_hf"]

_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:500]


def _is_saved_to_disk(p: Path) -> bool:
    return (p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file())


def _load_dataset(name: str, split: str, subset: str | None, cache_dir: str | None) -> Any:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError(f"dataset {name}: the 'datasets' package is required (pip install datasets)") from None

    p = Path(name).expanduser()
    where = f"dataset {name} (subset={subset}, split={split})"
    try:
        if p.is_dir() and _is_saved_to_disk(p):
            obj = datasets.load_from_disk(str(p))
            if isinstance(obj, datasets.DatasetDict):
                if split not in obj:
                    raise DataError(f"{where}: split '{split}' not found; available: {', '.join(obj.keys())}")
                return obj[split]
            return obj
        if p.is_file():
            builder = _FILE_BUILDERS.get(p.suffix.lower())
            if builder is None:
                raise DataError(
                    f"{where}: unsupported data file extension '{p.suffix}' (supported: {', '.join(_FILE_BUILDERS)})"
                )
            return datasets.load_dataset(builder, data_files={split: str(p)}, split=split, cache_dir=cache_dir)
        return datasets.load_dataset(name, subset, split=split, cache_dir=cache_dir)
    except DataError:
        raise
    except Exception as e:  # DatasetNotFoundError, FileNotFoundError, ValueError(unknown split), ...
        raise DataError(f"{where}: cannot load ({_one_line(e)})") from None


def load_hf(
    name: str,
    split: str = "train",
    subset: str | None = None,
    columns: dict[str, str] | None = None,
    source: str | None = None,
    *,
    cache_dir: str | None = None,
) -> list[Problem]:
    """Load a HF dataset split as problems via ``datasets.load_dataset(name, subset,
    split=split)`` (or ``load_from_disk`` for a saved local directory).

    ``columns`` maps our field -> dataset column, exactly as for :func:`load_file`.
    Missing ids become ``f"{basename}-{split}-{i}"``; missing sources become ``source`` or
    ``name``.  Rows are not validated here: run :func:`validate_problems` afterwards.
    """
    if not name:
        raise DataError("load_hf: dataset name/path is empty")
    ds = _load_dataset(name, split, subset, cache_dir)
    base = os.path.basename(os.path.normpath(name)) or name
    base = Path(base).stem if Path(name).is_file() else base
    available = list(getattr(ds, "column_names", None) or []) or None
    return rows_to_problems(
        ds,
        columns,
        default_source=source or name,
        id_prefix=f"{base}-{split}",
        origin=f"dataset {name} ({split})",
        available_columns=available,
    )

"""Problem sources. Every source yields `Problem` rows (id, problem, answer, reference_solution, source)."""

from __future__ import annotations

from intrain.config import SourceConfig
from intrain.data.problem import DataError, Problem, validate_problems

__all__ = ["DataError", "Problem", "load_problems"]


def load_problems(source: SourceConfig, on_invalid: str = "error") -> tuple[list[Problem], list[str]]:
    """Load and validate one source. Returns (problems, ids of skipped invalid rows)."""
    if source.kind == "file":
        from intrain.data.files import load_file

        assert source.path is not None, "SourceConfig's validator requires a path for kind 'file'"
        rows, origin = load_file(source.path, source.columns, source.source), source.path
    elif source.kind == "hf":
        from intrain.data.hub import load_hf

        assert source.name is not None, "SourceConfig's validator requires a name for kind 'hf'"
        rows = load_hf(source.name, source.split, source.subset, source.columns, source.source)
        origin = f"{source.name}[{source.split}]"
    elif source.kind == "champ":
        from intrain.data.champ import load_champ

        rows, origin = load_champ(source.path), source.path or "champ-dataset"
    else:
        from intrain.data.arithmetic import generate_arithmetic

        rows = generate_arithmetic(
            source.size,
            source.seed,
            steps=source.steps,
            max_operand=source.max_operand,
            max_result=source.max_result,
        )
        origin = f"arithmetic(seed={source.seed})"
    if source.limit is not None:
        rows = rows[: source.limit]
    problems, skipped = validate_problems(rows, on_invalid, origin)
    _require_some(problems, skipped, origin)
    return problems, skipped


def _require_some(problems: list[Problem], skipped: list[str], origin: str) -> None:
    # An empty source would run every stage on nothing and "complete" with zero counts.
    if problems:
        return
    if skipped:
        raise DataError(f"{origin}: no problems left: all {len(skipped)} rows were invalid and skipped")
    raise DataError(f"{origin}: no problems (the source has no rows)")

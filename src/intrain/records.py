"""The typed rows that stages write and read, and the Parquet schema derived from them.

Every stage shard holds one record type; the Parquet schema comes from the dataclass (so a column's
type is declared once), and `docs/ARTIFACTS.md` is generated from the field docs below (a test keeps
it in sync). Users load the shards with `datasets.load_dataset("parquet", ...)` or pandas; stages
use `Stage.records()` and never spell column names by hand.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from intrain.data.problem import Problem

R = TypeVar("R", bound="Record")


def doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field carrying its column description (for the artifacts page)."""
    if default is dataclasses.MISSING:
        return field(metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


class Record:
    """Base of every stage row: dict conversion and the Arrow schema."""

    @classmethod
    def schema(cls) -> pa.Schema:
        hints = typing.get_type_hints(cls)
        return pa.schema([pa.field(f.name, *_arrow_type(hints[f.name])) for f in dataclasses.fields(cls)])  # type: ignore[arg-type]

    @classmethod
    def from_row(cls: type[R], row: dict[str, Any]) -> R:
        """The record of one row. A column whose field defaults to None (one added later, such as
        `Proposal.quote`) may be absent: shards written before it existed still load, with None. Any
        other missing column is an error, never a silent default."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        missing = [f.name for f in fields if f.name not in row and f.default is not None]
        if missing:
            raise ValueError(f"{cls.__name__}: row lacks column(s) {', '.join(missing)}")
        return cls(**{f.name: row[f.name] for f in fields if f.name in row})

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _arrow_type(hint: Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for a field's Python annotation."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _arrow_type(inner[0])[0], True
    if typing.get_origin(hint) is list:
        return pa.list_(_arrow_type(args[0])[0]), False
    scalar = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    return scalar[hint], False


def _problem_of(row: Rollout | Proposal) -> Problem:
    """The problem a rollout or proposal row was made from (its columns carry all of it)."""
    return Problem(
        id=row.problem_id,
        problem=row.problem,
        answer=row.answer,
        reference_solution=row.reference_solution,
        source=row.source,
    )


# ------------------------------------------------------------------------------------------- rows


@dataclass
class Rollout(Record):
    """One graded sample of a problem (stages `sample` and `eval-<label>`)."""

    problem_id: str = doc("Problem id from the data source.")
    source: str = doc("Data source or benchmark name; eval reports per source.")
    problem: str = doc("Problem text (before the prompt template).")
    answer: str = doc("Gold answer.")
    reference_solution: str = doc("Reference solution ('' when the source has none).")
    sample_index: int = doc("0-based index of this sample among the problem's samples.")
    completion: str = doc("Generated text.")
    completion_tokens: int = doc("Tokens generated.")
    prompt_tokens: int = doc("Tokens of the rendered prompt.")
    finish_reason: str = doc("'stop' (end of turn or stop string) or 'length' (hit max_tokens).")
    correct: bool = doc("The last \\boxed{} answer matches the gold answer (math-verify).")
    reason: str = doc("Grading verdict: correct, wrong, no_answer, timeout or parse_error.")
    extracted: str | None = doc("The extracted last boxed answer, if any.")

    @property
    def attempt_id(self) -> str:
        return f"{self.problem_id}#{self.sample_index}"

    def as_problem(self) -> Problem:
        return _problem_of(self)


@dataclass
class Proposal(Record):
    """One proposer output for one failed attempt (stage `propose`)."""

    problem_id: str = doc("Problem id.")
    attempt_id: str = doc("`<problem_id>#<sample_index>` of the failed rollout.")
    proposal_index: int = doc("0-based index among the proposals for this attempt.")
    source: str = doc("Data source.")
    problem: str = doc("Problem text.")
    answer: str = doc("Gold answer.")
    reference_solution: str = doc("Reference solution shown to the proposer.")
    attempt: str = doc("The failed rollout's text.")
    num_substeps: int = doc("Blank-line substeps in the attempt.")
    shown_substeps: int = doc("Substeps shown to the proposer (fewer when the prompt was cut to its token budget).")
    truncated: bool = doc("The attempt was cut to fit propose.max_prompt_tokens.")
    solve_output: str | None = doc("Two-turn templates: the proposer's own solution with the reference (turn 1).")
    proposer_output: str = doc("Raw proposer text (verification, error, intervention).")
    proposer_finish_reason: str = doc("'stop' or 'length'.")
    status: str = doc("ok, no_tag, bad_json, bad_location, empty, leak or not_first (see docs/ARTIFACTS.md).")
    content: str | None = doc("Parsed intervention text (the replacement step).")
    location: int | None = doc("Parsed 1-based substep the intervention replaces.")
    guided_prefix: str | None = doc(
        "ok/leak/not_first rows: the attempt's substeps before `location` + the intervention."
    )
    original_step_prefix: str | None = doc("The substeps before `location` + the original erroneous substep.")
    quote: str | None = doc(
        "Parsed optional `quote` of the erroneous text. Found in a shown substep, it sets `location`, also over a "
        "stated location that disagrees (several matches: the stated one if among them, else the first). None when "
        "absent (and in shards written before this column).",
        None,
    )

    def as_problem(self) -> Problem:
        return _problem_of(self)


@dataclass
class FilterResult(Proposal):
    """An `ok` proposal with its continuation counts (stage `filter`)."""

    continuations: int = doc("Continuations sampled from the guided prefix (early-stopped).", 0)
    continuations_correct: int = doc("Of those, correct.", 0)
    kept: bool = doc("continuations_correct >= filter.min_correct (always true with the filter disabled).", False)
    example_continuation: str | None = doc("One correct continuation, for inspection.", None)
    original_continuations: int | None = doc("filter.diagnose: continuations from the original erroneous step.", None)
    original_correct: int | None = doc("filter.diagnose: of those, correct.", None)
    error_free: bool | None = doc("filter.verify: the guided prefix has no error by the family's ground truth.", None)


@dataclass
class Reflection(Record):
    """A rewritten whole solution of a failed attempt, given the reference (stage `reflect`)."""

    problem_id: str = doc("Problem id.")
    attempt_id: str = doc("`<problem_id>#<sample_index>` of the failed rollout.")
    problem: str = doc("Problem text.")
    answer: str = doc("Gold answer.")
    reflection: str = doc("The rewritten solution.")
    correct: bool = doc("Its boxed answer is correct.")
    reason: str = doc("Grading verdict.")


@dataclass
class SFTExample(Record):
    """One tokenised training row (stages `sft` and `sft-<baseline>`)."""

    problem_id: str = doc("Problem id.")
    problem: str = doc("Problem text.")
    target: str = doc("Trained text: InT = own prefix + intervention; baselines = a whole solution.")
    input_ids: list[int] = doc(
        "Prompt (chat template + generation prompt) + target tokens; InT rows end without end-of-turn."
    )
    labels: list[int] = doc("-100 on the prompt, the token id on the target.")


@dataclass
class ContinuationTrial(Record):
    """Continuations of one failed attempt under one condition (stage `lab-table1`)."""

    attempt_id: str = doc("`<problem_id>#<sample_index>` of the failed rollout.")
    problem_id: str = doc("Problem id.")
    condition: str = doc("problem_only, prefix_only, prefix_original, prefix_self or prefix_oracle.")
    location: int | None = doc("Substep the condition cuts at (the true first error; the proposer's for prefix_self).")
    prefix: str = doc("The open assistant turn that was continued.")
    sampled: int = doc("Continuations sampled.")
    correct: int = doc("Of those, correct.")


@dataclass
class FilterTrial(Record):
    """One candidate intervention, its ground-truth verdict and its continuations (stage `lab-filter-precision`)."""

    attempt_id: str = doc("`<problem_id>#<sample_index>` of the failed rollout.")
    problem_id: str = doc("Problem id.")
    proposer: str = doc("self (the propose stage's first ok proposal) or oracle (with lab.precision_noise).")
    location: int = doc("Substep the intervention replaces.")
    error_free: bool = doc("The ground truth finds no error in the prefix + intervention.")
    verdicts: list[bool] = doc("Correctness of each continuation, in sampling order.")


# Which record each stage's shards hold; `eval-*`, `sft-*` and `rl-*` stages share their kind's record.
STAGE_RECORDS: dict[str, type[Record]] = {
    "sample": Rollout,
    "eval-<label>": Rollout,
    "propose": Proposal,
    "filter": FilterResult,
    "reflect": Reflection,
    "sft / sft-<baseline>": SFTExample,
    "lab-table1": ContinuationTrial,
    "lab-filter-precision": FilterTrial,
}


def artifacts_markdown() -> str:
    """The artifact page: one table per stage (column, type, meaning), generated from the records."""
    out = [
        "# Stage artifacts",
        "",
        "Generated from `src/intrain/records.py` (`python -m intrain.records > docs/ARTIFACTS.md`).",
        "Each stage folder `RUN/<stage>/` holds `shard-NNNNN.parquet` files of one record type and a",
        "`manifest.json` (status, config fingerprint, counts, timings, library versions). Load a stage with",
        '`datasets.load_dataset("parquet", data_files="RUN/<stage>/shard-*.parquet", split="train")`, or',
        'with pandas: `pd.concat(pd.read_parquet(p) for p in sorted(Path("RUN/<stage>").glob("shard-*.parquet")))`.',
        "",
        "Proposal statuses: `ok` (parsed, kept for the filter), `no_tag` (no `<intervention>` block),",
        "`bad_json` (a block that cannot be read), `bad_location` (location outside the shown substeps, or a",
        "`quote` found in none of them and no location),",
        "`empty` (no or placeholder content), `leak` (the content states the gold answer; `propose.leak_filter`),",
        "`not_first` (a later `ok` proposal of an attempt that already has one; `propose.per_attempt: first_ok`).",
        "",
    ]
    for stage, record in STAGE_RECORDS.items():
        hints = typing.get_type_hints(record)
        out += [
            f"## `{stage}`: {record.__name__}",
            "",
            (record.__doc__ or "").strip(),
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        for f in dataclasses.fields(record):  # type: ignore[arg-type]
            arrow, nullable = _arrow_type(hints[f.name])
            kind = f"{arrow}{' (nullable)' if nullable else ''}"
            meaning = f.metadata["doc"].replace("|", "\\|")
            out.append(f"| `{f.name}` | {kind} | {meaning} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(artifacts_markdown(), end="")

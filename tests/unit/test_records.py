"""Typed stage records: schema, round trip through a shard, and the artifacts page kept in sync."""

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from intrain.records import FilterResult, Proposal, Rollout, SFTExample, artifacts_markdown
from intrain.store import Stage

ROLLOUT = Rollout(
    problem_id="p1",
    source="arith",
    problem="1+1?",
    answer="2",
    reference_solution="1+1=2",
    sample_index=3,
    completion="\\boxed{2}",
    completion_tokens=4,
    prompt_tokens=9,
    finish_reason="stop",
    correct=True,
    reason="correct",
    extracted=None,
)


def test_schema_is_derived_from_the_annotations():
    schema = Rollout.schema()
    assert schema.field("sample_index").type == pa.int64() and not schema.field("sample_index").nullable
    assert schema.field("extracted").type == pa.string() and schema.field("extracted").nullable
    assert SFTExample.schema().field("labels").type == pa.list_(pa.int64())
    assert FilterResult.schema().names[: len(Proposal.schema().names)] == Proposal.schema().names


def test_records_round_trip_through_a_shard(tmp_path):
    stage = Stage(tmp_path, "sample", "h")
    stage.write_records(0, [ROLLOUT], Rollout)
    stage.write_records(1, [], Rollout)
    assert stage.records(Rollout) == [ROLLOUT]
    assert ROLLOUT.attempt_id == "p1#3"
    # An empty shard still carries the schema, so readers see the columns.
    import pyarrow.parquet as pq

    assert pq.read_table(stage.shard_path(1)).schema.names == Rollout.schema().names


def test_a_row_missing_a_column_names_it():
    row = ROLLOUT.to_row()
    del row["finish_reason"]
    with pytest.raises(ValueError, match=r"Rollout: row lacks column.*finish_reason"):
        Rollout.from_row(row)


def test_artifacts_page_is_generated_from_the_records():
    page = Path(__file__).parents[2] / "docs" / "ARTIFACTS.md"
    assert page.read_text() == artifacts_markdown(), "regenerate: python -m intrain.records > docs/ARTIFACTS.md"


PROPOSAL = Proposal(
    problem_id="p1",
    attempt_id="p1#0",
    proposal_index=0,
    source="arith",
    problem="6 + 10?",
    answer="16",
    reference_solution="6 + 10 = 16",
    attempt="Then 6 + 10 = 60.",
    num_substeps=1,
    shown_substeps=1,
    truncated=False,
    solve_output=None,
    proposer_output='<intervention>{"content": "Redo it.", "quote": "6 + 10 = 60"}</intervention>',
    proposer_finish_reason="stop",
    status="ok",
    content="Redo it.",
    location=1,
    guided_prefix="Redo it.",
    original_step_prefix="Then 6 + 10 = 60.",
    quote="6 + 10 = 60",
)


def test_a_shard_written_before_a_nullable_column_still_loads(tmp_path):
    """Proposal/FilterResult shards from before `quote` existed load with quote=None."""
    stage = Stage(tmp_path, "propose", "h")
    old_schema = pa.schema([f for f in Proposal.schema() if f.name != "quote"])
    row = {k: v for k, v in PROPOSAL.to_row().items() if k != "quote"}
    stage.write_shard(0, [row], schema=old_schema)
    stage.write_records(1, [PROPOSAL], Proposal)
    old, new = stage.records(Proposal)
    assert old == replace(PROPOSAL, quote=None)
    assert new == PROPOSAL
    filtered = FilterResult(**row, continuations=4, continuations_correct=2, kept=True)
    assert FilterResult.from_row({k: v for k, v in filtered.to_row().items() if k != "quote"}) == filtered


def test_only_a_column_defaulting_to_none_may_be_missing():
    row = FilterResult(**PROPOSAL.to_row(), continuations=4, continuations_correct=2, kept=True).to_row()
    del row["kept"]  # has a default, but False is not "absent": still an error
    with pytest.raises(ValueError, match=r"FilterResult: row lacks column.*kept"):
        FilterResult.from_row(row)

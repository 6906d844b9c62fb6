"""Typed stage records: schema, round trip through a shard, and the artifacts page kept in sync."""

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

import pytest

from intrain.store import Stage, StageConfigChanged, read_stage_rows


def test_shards_roundtrip_and_manifest(tmp_path):
    stage = Stage(tmp_path, "sample", "h1")
    assert not stage.complete and not stage.has_shard(0)
    stage.write_shard(0, [{"a": 1, "b": [1.0, 2.0]}, {"a": 2, "b": []}])
    stage.write_shard(1, [{"a": 3, "b": [0.5]}])
    with pytest.raises(FileNotFoundError, match="has not finished"):
        read_stage_rows(tmp_path, "sample")
    stage.finish({"rows": 3})
    assert stage.complete
    assert [r["a"] for r in read_stage_rows(tmp_path, "sample")] == [1, 2, 3]
    manifest = stage.manifest()
    assert manifest["counts"] == {"rows": 3} and manifest["shards"] == 2 and "torch" in manifest["versions"]
    assert "wall_s" in manifest["timings"]


def test_shards_load_with_datasets(tmp_path):
    from datasets import load_dataset

    stage = Stage(tmp_path, "s", "h")
    stage.write_shard(0, [{"x": i} for i in range(3)])
    stage.write_shard(1, [{"x": i} for i in range(3, 5)])
    ds = load_dataset("parquet", data_files=[str(p) for p in stage.shard_paths()], split="train")
    assert sorted(ds["x"]) == [0, 1, 2, 3, 4]


def test_changed_config_refuses_unless_forced(tmp_path):
    stage = Stage(tmp_path, "sample", "h1")
    stage.write_shard(0, [{"a": 1}])
    with pytest.raises(StageConfigChanged, match="--force"):
        Stage(tmp_path, "sample", "h2")
    assert stage.has_shard(0)  # nothing was lost by the refusal
    forced = Stage(tmp_path, "sample", "h2", force=True)
    assert not forced.has_shard(0)


def test_same_config_reopens_and_keeps_shards(tmp_path):
    Stage(tmp_path, "sample", "h1").write_shard(0, [{"a": 1}])
    again = Stage(tmp_path, "sample", "h1")
    assert again.has_shard(0) and again.read_shard(0) == [{"a": 1}]


def test_no_temp_files_left(tmp_path):
    stage = Stage(tmp_path, "s", "h")
    stage.write_shard(0, [{"a": 1}])
    assert not [p for p in stage.path.iterdir() if p.name.startswith(".")]

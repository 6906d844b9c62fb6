"""The store never loses data: refusal only where something was produced, one process per run
directory, and a failed write leaves no half-written file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from intrain import store
from intrain.store import RunDirError, RunDirInUse, Stage, StageConfigChanged, atomic_write_bytes, lock_run_dir

# -- a changed config: refuse only what holds output --------------------------------------------------------


def test_stage_that_produced_nothing_restarts_with_the_new_fingerprint(tmp_path):
    Stage(tmp_path, "sample", "old")  # failed before its first shard: a running manifest, nothing else
    again = Stage(tmp_path, "sample", "new")
    manifest = again.manifest()
    assert manifest is not None and manifest["config_hash"] == "new" and manifest["status"] == "running"
    assert [p.name for p in again.path.iterdir()] == ["manifest.json"]


def test_leftover_temporary_files_do_not_count_as_output(tmp_path):
    stage = Stage(tmp_path, "sample", "old")
    (stage.path / ".shard-00000.parquet.abc.tmp").write_bytes(b"half")  # a process killed mid-write
    again = Stage(tmp_path, "sample", "new")
    assert [p.name for p in again.path.iterdir()] == ["manifest.json"]


def test_stage_with_shards_still_refuses_and_keeps_them(tmp_path):
    Stage(tmp_path, "sample", "old").write_shard(0, [{"a": 1}])
    with pytest.raises(StageConfigChanged, match=r"different config.*--force"):
        Stage(tmp_path, "sample", "new")
    kept = Stage(tmp_path, "sample", "old")
    assert kept.read_shard(0) == [{"a": 1}]


def test_complete_stage_without_shards_still_refuses(tmp_path):
    Stage(tmp_path, "sft", "old").finish({"rows": 0}, model=None)
    with pytest.raises(StageConfigChanged):
        Stage(tmp_path, "sft", "new")


def test_stage_with_checkpoints_but_no_shards_still_refuses(tmp_path):
    # An RL stage writes checkpoints and a log, never shards; resume would pick the checkpoints up.
    stage = Stage(tmp_path, "rl-int-s0", "old")
    (stage.path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(StageConfigChanged):
        Stage(tmp_path, "rl-int-s0", "new")
    assert (stage.path / "checkpoints" / "checkpoint-2").is_dir()


def test_forced_restart_still_clears_output(tmp_path):
    Stage(tmp_path, "sample", "old").write_shard(0, [{"a": 1}])
    assert not Stage(tmp_path, "sample", "new", force=True).has_shard(0)


# -- a full disk --------------------------------------------------------------------------------------------


def test_failed_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "stage" / "shard-00000.parquet"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, b"x" * 4096)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert list(target.parent.iterdir()) == []  # neither the target nor the half-written temporary


def test_failed_shard_write_keeps_the_previous_shards(tmp_path, monkeypatch):
    stage = Stage(tmp_path, "sample", "h")
    stage.write_shard(0, [{"a": 1}])

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError):
        stage.write_shard(1, [{"a": 2}])
    assert sorted(p.name for p in stage.path.iterdir()) == ["manifest.json", "shard-00000.parquet"]


# -- one process per run directory ----------------------------------------------------------------------------


def test_a_second_holder_is_refused_with_the_owners_pid(tmp_path):
    run_dir = tmp_path / "run"
    refused = rf"run directory {run_dir} is in use by another intrain process \(pid {os.getpid()}\)"
    with lock_run_dir(run_dir), pytest.raises(RunDirInUse, match=refused), lock_run_dir(run_dir):
        pass


def test_the_lock_is_released_on_exit_and_on_error(tmp_path):
    with lock_run_dir(tmp_path):
        pass
    with pytest.raises(KeyError), lock_run_dir(tmp_path):
        raise KeyError("boom")
    with lock_run_dir(tmp_path):  # free again
        pass


def test_a_run_directory_that_cannot_be_made_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match=r"output\.run_dir: cannot use .*file/run as a run directory"):
        lock_run_dir(blocker / "run").__enter__()
    with pytest.raises(RunDirError, match=r"--run-dir: .*file is a file"):
        lock_run_dir(blocker, "--run-dir").__enter__()


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from intrain.store import lock_run_dir

    with lock_run_dir(Path(sys.argv[1])):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_another_process_holding_the_lock_refuses_the_cli(tmp_path, tiny_model_dir, capsys):
    from intrain.cli import main

    run_dir = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{path: {tiny_model_dir}}}\noutput: {{run_dir: {run_dir}}}\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["sample", str(config)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: run directory {run_dir} is in use by another intrain process (pid {holder.pid})"
        assert not (run_dir / "sample").exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    with lock_run_dir(run_dir):  # released when its owner ended
        pass


def test_secondary_ranks_of_a_launch_do_not_take_the_lock(tmp_path, tiny_model_dir, monkeypatch, capsys):
    # Under `accelerate launch` every rank runs the command on the same run directory; rank 0 holds the lock.
    from intrain.cli import main

    run_dir = tmp_path / "run"
    config = tmp_path / "config.yaml"
    missing = tmp_path / "missing.jsonl"
    config.write_text(
        f"model: {{path: {tiny_model_dir}}}\noutput: {{run_dir: {run_dir}}}\n"
        f"data: {{train: {{kind: file, path: {missing}}}}}\n"
    )
    monkeypatch.setenv("RANK", "1")
    with lock_run_dir(run_dir):  # rank 0
        assert main(["sample", str(config)]) == 2
    assert "file not found" in capsys.readouterr().err  # got past the lock to the data

"""`last_complete_checkpoint`: the newest checkpoint-<step> folder whose trainer_state.json (written
last by Trainer) is on disk and whole; what SFT and GRPO both resume from."""

from __future__ import annotations

from pathlib import Path

from intrain.training.checkpoints import last_complete_checkpoint, prune_checkpoints


def checkpoint(folder: Path, name: str, state: str | None = '{"global_step": 1}') -> Path:
    path = folder / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_no_checkpoints(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_newest_by_step_number_not_by_name(tmp_path):
    checkpoint(tmp_path, "checkpoint-9")
    newest = checkpoint(tmp_path, "checkpoint-10")
    assert last_complete_checkpoint(tmp_path) == newest


def test_half_written_newest_is_skipped(tmp_path):
    done = checkpoint(tmp_path, "checkpoint-3")
    checkpoint(tmp_path, "checkpoint-4", state=None)  # killed before trainer_state.json
    assert last_complete_checkpoint(tmp_path) == done
    checkpoint(tmp_path, "checkpoint-5", state='{"global_step": 5, "log_hist')  # killed while writing it
    assert last_complete_checkpoint(tmp_path) == done


def test_only_half_written_means_start_over(tmp_path):
    checkpoint(tmp_path, "checkpoint-1", state=None)
    assert last_complete_checkpoint(tmp_path) is None


def test_other_names_and_files_are_ignored(tmp_path):
    done = checkpoint(tmp_path, "checkpoint-2")
    checkpoint(tmp_path, "checkpoint-last")
    checkpoint(tmp_path, "checkpoint-7-old")
    checkpoint(tmp_path, "tmp-checkpoint-8")
    checkpoint(tmp_path, "run-checkpoint-9")
    (tmp_path / "checkpoint-99").write_text("a file, not a folder")
    assert last_complete_checkpoint(tmp_path) == done


def test_prune_keeps_the_newest_by_step_and_nothing_else(tmp_path):
    for step in (2, 10, 4):
        checkpoint(tmp_path, f"checkpoint-{step}")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    gone = prune_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in gone) == ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "notes.txt"]


def test_prune_to_zero_removes_the_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    checkpoint(folder, "checkpoint-1")
    checkpoint(folder, "checkpoint-2")
    (folder / "README.md").write_text("model card written by the trainer")
    prune_checkpoints(folder, keep=0)
    assert not folder.exists()
    assert prune_checkpoints(folder, keep=0) == []  # a stage that never checkpointed

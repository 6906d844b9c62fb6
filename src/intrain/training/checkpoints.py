"""The one place a re-run picks the checkpoint it resumes from (SFT and GRPO alike)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest `checkpoint-<step>` folder in `folder` that Trainer finished writing, or None.

    Trainer._save_checkpoint (transformers 5.x) writes straight into the final folder, with no
    staging folder and no rename: the weights (after TRL's model card), then optimizer and
    scheduler, grad scaler and RNG states, and trainer_state.json last; only then does it delete
    old checkpoints. Nothing else marks a checkpoint as done, so a run killed mid-save leaves the
    newest folder without trainer_state.json. transformers' own get_last_checkpoint (what
    `resume_from_checkpoint=True` uses) only looks at the folder name and would pick it, and every
    re-run would then die loading it. trainer_state.json is itself written with a plain
    open/write (not atomically) and carries the whole log history, so it must also parse.
    """
    found = []
    for path in Path(folder).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if path.is_dir() and step.isdigit() and _state_is_whole(path / "trainer_state.json"):
            found.append((int(step), path))
    return max(found)[1] if found else None


def _state_is_whole(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def prune_checkpoints(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoint folders of a completed stage (with keep=0, the
    whole checkpoint folder); return the checkpoints that went.

    Called once the stage's final model is saved and its manifest says complete, so no resume
    point is needed any more; a checkpoint carries optimizer state (about 50 GB for a 4B model).
    """
    found = sorted(
        (int(p.name.removeprefix("checkpoint-")), p)
        for p in Path(folder).glob("checkpoint-*")
        if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()
    )
    doomed = [path for _, path in found[: max(0, len(found) - keep)]]
    for path in doomed:
        shutil.rmtree(path)
    if keep == 0 and Path(folder).is_dir():
        shutil.rmtree(folder)  # what Trainer leaves beside its checkpoints (TRL's model card) goes too
    return doomed

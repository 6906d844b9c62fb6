"""Forwarding RUN/metrics.jsonl lines to the trackers of `output.report_to` (tensorboard, wandb, trackio).

The store calls `forward` when a stage finishes; TRL's own integrations (its `report_to`, set from the same
setting in training/sft.py and training/grpo.py) log the per-step SFT and RL numbers. Each tracker is opened
once per process and run directory, on the first line it gets. Every number of a line becomes a scalar
named `<stage>/<key>`; non-numbers (and booleans) stay in metrics.jsonl only.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any, Protocol

# A stage's finishing numbers have no step of their own; trackers that need one get 0.
FINISH_STEP = 0


class Tracker(Protocol):
    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class _TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandbLike:
    """wandb and trackio share this API: `init(project=, name=)`, `log(dict)`, `finish()`. A run TRL's
    callback already started in this process is reused, not replaced."""

    def __init__(self, module_name: str, run_dir: Path) -> None:
        import importlib

        self.module = importlib.import_module(module_name)
        project = os.environ.get(f"{module_name.upper()}_PROJECT", "intrain")
        if getattr(self.module, "run", None) is None:
            self.module.init(project=project, name=run_dir.resolve().name)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.module.log(dict(scalars))

    def close(self) -> None:
        self.module.finish()


_OPEN: dict[tuple[Path, str], Tracker] = {}


def _open(run_dir: Path, name: str) -> Tracker:
    key = (run_dir.resolve(), name)
    if key not in _OPEN:
        _OPEN[key] = _TensorBoard(run_dir) if name == "tensorboard" else _WandbLike(name, run_dir)
        if len(_OPEN) == 1:
            atexit.register(close_all)
    return _OPEN[key]


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics line's numbers as `<stage>/<key>` scalars."""
    numbers = record.get("metrics") or {}
    return {
        f"{record['stage']}/{key}": float(value)
        for key, value in numbers.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def forward(run_dir: Path, trackers: tuple[str, ...], record: dict[str, Any]) -> None:
    """Log one metrics line to each of `trackers` for `run_dir`."""
    values = scalars(record)
    if not values:
        return
    found = record.get("step")
    step = found if isinstance(found, int) else FINISH_STEP
    for name in trackers:
        _open(run_dir, name).log(values, step)


def close_all() -> None:
    """Flush and close every tracker this process opened (also run at exit)."""
    while _OPEN:
        _, tracker = _OPEN.popitem()
        tracker.close()

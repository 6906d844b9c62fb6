"""Console progress for long generation stages: done/total, generated tokens/s and ETA; and the
library chatter our training calls silence."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def interactive() -> bool:
    """Whether a live bar is wanted: both streams are terminals. Redirected output (a log file, a pipe,
    CI) would otherwise collect the bar's frames, or its final frame in the middle of the log."""
    return console.is_terminal and sys.stdout.isatty()


class StageProgress:
    """A progress bar over sequences; `advance` also counts generated tokens for a tokens/s readout.

    Tokens are counted whether or not the bar is shown: stages record the total in their timings."""

    def __init__(self, description: str, total: int):
        self._tokens = 0
        self._start = time.time()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not interactive() or total == 0,
        )
        self._task = self._progress.add_task(description, total=total, rate="")

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, sequences: int, tokens: int = 0) -> None:
        self._tokens += tokens
        elapsed = max(time.time() - self._start, 1e-6)
        self._progress.update(self._task, advance=sequences, rate=f"{self._tokens / elapsed:,.0f} tok/s")

    @property
    def tokens(self) -> int:
        return self._tokens


@contextlib.contextmanager
def quiet_training_libraries() -> Iterator[None]:
    """Around our SFT and GRPO trainer calls: no `datasets` progress bars (TRL maps a few rows through
    "Tokenizing", "Truncating" and "Dropping fully masked examples" bars each call) and no FutureWarning
    about transformers' `is_gradient_checkpointing` alias, which TRL reads every RL step, nor TRL's note
    that `rollout_func` (our engine's rollouts) is experimental. None says anything a user can act on.
    Every other warning still shows; the bars' setting is restored afterwards."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)
            warnings.filterwarnings("ignore", r"You are using 'rollout_func'", UserWarning)
            yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()

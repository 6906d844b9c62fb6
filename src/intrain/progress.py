"""Console progress for long generation stages: done/total, ETA and tokens/s."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class StageProgress:
    """A progress bar over sequences; `advance` also counts generated tokens for a tokens/s readout."""

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
            disable=not sys.stderr.isatty() and total == 0,
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

"""Answer grading: last-``\\boxed{}`` extraction plus a math-verify comparison in worker processes.

Why worker processes rather than threads or in-process calls:
- math-verify turns untrusted model text into SymPy objects (``parse_expr`` evaluates), so that
  text is only ever handed to a worker; the parent does pure string work.
- SymPy can hang inside C-level big-integer arithmetic (``\\boxed{9^{9^{9}}}``) where no signal is
  delivered, so the only reliable bound is killing the process.
- math-verify's own timeouts use ``signal.alarm``, which raises outside the main thread, and TRL
  calls reward functions from threads. Workers run math-verify with its timeouts off and the
  parent enforces one wall-clock deadline per item.

RL optimises against this grader, so model text is hostile (tests/fixtures/hostile_predictions.py
is the corpus it is tested against): the parent's string work is linear in the text, answers over
MAX_ANSWER_CHARS never reach a worker, and each worker runs under an address-space cap and an
audit hook that refuses process creation, signals, file writes and sockets. A worker that dies,
overruns the deadline or nears its cap is replaced, and only the item it held is affected.

Layout, one concern per module: ``answers`` is the parent's string work on model text (extraction,
normalisation, the verdicts settled without a worker), ``worker`` is the only code that touches
math-verify / SymPy and the hardening of the worker process, ``verdicts`` is the vocabulary both
sides share, and this module is the parent side: the ``Grader`` pool.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from intrain.grading.answers import _distinct_integers, _same_string, extract_boxed, normalize_answer
from intrain.grading.verdicts import CORRECT, NO_ANSWER, PARSE_ERROR, TIMEOUT, WRONG, Verdict
from intrain.grading.worker import _READY, _worker_main

__all__ = ["MAX_ANSWER_CHARS", "Grader", "GraderStats", "Verdict", "extract_boxed", "normalize_answer"]

# Generous: a fresh spawn imports SymPy and ANTLR (~0.5 s idle, far more on a loaded machine).
_STARTUP_TIMEOUT_S = 120.0
# A worker whose pipe reads EOF is exiting; this only bounds the wait for its exit code.
_REAP_TIMEOUT_S = 5.0
# Deaths by these signals usually come from outside (the kernel's OOM killer, an operator), so the
# item is retried once. Any other death (segfault, abort on a failed allocation, exit) was caused
# by the input itself and would only repeat.
_OUTSIDE_KILL_EXIT_CODES = frozenset({-signal.SIGKILL, -signal.SIGTERM})

# Address space a worker may map beyond what it holds once started (see _harden_worker). The
# verdict table of tests/unit/test_grading.py peaks about 6 MB above that footprint; gigabytes mean
# an astronomic number is being built. The product with the worker count bounds what grading can
# take from the host. (Belongs in GradingConfig next to workers and timeout_s.)
DEFAULT_WORKER_MEMORY_BYTES = 1024**3
# Extracted answers longer than this are scored as unparseable without a worker. Real final
# answers are at most a few hundred characters, math-verify's parse time grows with length
# (about 1 s at 4,000 characters), and a megabyte answer would only burn a worker's deadline.
# A long answer that equals the gold as a string is still found correct in the parent.
MAX_ANSWER_CHARS = 2000


@dataclass
class GraderStats:
    """What a Grader's pool has been through since it was made (for benchmarks and logs)."""

    started: int = 0  # worker processes started, replacements included
    replaced: int = 0  # workers killed (or found dead) and replaced
    timeouts: int = 0  # items that overran the deadline; each cost its worker
    crashes: int = 0  # workers that died while grading an item
    memory_exhausted: int = 0  # workers that hit or neared their memory cap, replied and retired
    over_long: int = 0  # answers over MAX_ANSWER_CHARS, scored without a worker


class _Worker:
    def __init__(self, ctx: Any, memory_bytes: int | None) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main, args=(child_conn, memory_bytes), daemon=True, name="intrain-grader"
        )
        self.proc.start()
        # Drop our copy of the child's end so that a dead worker reads as EOF, not a hang.
        child_conn.close()
        self.ready = False
        self.job: int | None = None
        self.deadline = time.monotonic() + _STARTUP_TIMEOUT_S

    def assign(self, job: int, payload: tuple[str, str], timeout_s: float) -> None:
        self.conn.send(payload)
        self.job = job
        self.deadline = time.monotonic() + timeout_s

    def died_of_outside_kill(self) -> bool:
        """For a worker whose pipe hit EOF: whether the kill probably came from outside."""
        self.proc.join(_REAP_TIMEOUT_S)
        return self.proc.exitcode is None or self.proc.exitcode in _OUTSIDE_KILL_EXIT_CODES

    def stop(self) -> None:
        # Workers hold no state worth a graceful shutdown, and a hung one ignores polite requests.
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class Grader:
    """Grades completions against gold answers on a persistent pool of worker processes.

    Thread-safe: concurrent ``grade`` calls are serialised on one lock, and each call already
    spreads its items over all workers. Workers start on the first ``grade``; a worker that
    crashes, overruns ``timeout_s`` on an item or exhausts its memory is replaced, and only the
    item it held is affected.

    Model text is treated as hostile: the parent does only linear-time string work on it, and
    each worker runs with ``worker_memory_bytes`` of address space on top of its start-up
    footprint (None: no cap) and with process creation, signals, file writes and sockets refused.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 10.0,
        worker_memory_bytes: int | None = DEFAULT_WORKER_MEMORY_BYTES,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if worker_memory_bytes is not None and worker_memory_bytes <= 0:
            raise ValueError(f"worker_memory_bytes must be > 0 or None, got {worker_memory_bytes}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.worker_memory_bytes = worker_memory_bytes
        self.stats = GraderStats()
        # spawn: forking a parent that holds CUDA state and TRL's threads is unsafe.
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()
        # Workers that died before becoming ready, in a row. One death can come from outside
        # (OOM killer, an operator); one per pool slot in a row means the environment is broken.
        self._failed_starts = 0

    def grade(self, completions: Sequence[str], golds: Sequence[str]) -> list[Verdict]:
        if len(completions) != len(golds):
            raise ValueError(f"{len(completions)} completions but {len(golds)} golds")
        golds = [str(gold) for gold in golds]
        extracted = [extract_boxed(text) for text in completions]
        # Settled here, without a worker: no box means no answer, answers that match as
        # normalised strings are equal, and two distinct canonical integers are not, all without
        # paying for math-verify's ANTLR parse (2-60 ms, the dominant cost); that is what most
        # answers in RL batches on integer-answer problems look like.
        judged: dict[int, str] = {}
        payloads: dict[int, tuple[str, str]] = {}
        over_long = 0
        for i, (gold, answer) in enumerate(zip(golds, extracted)):
            if answer is None or _same_string(gold, answer):
                continue
            if len(answer) > MAX_ANSWER_CHARS:
                judged[i] = PARSE_ERROR
                over_long += 1
            elif _distinct_integers(gold, answer):
                judged[i] = WRONG
            else:
                payloads[i] = (gold, answer)
        if over_long:
            with self._lock:  # stats are shared by concurrent grade calls
                self.stats.over_long += over_long
        judged.update(zip(payloads, self._run(list(payloads.values()))))
        return [
            Verdict(False, NO_ANSWER, None)
            if answer is None
            else Verdict(judged[i] == CORRECT, judged[i], answer)
            if i in judged
            else Verdict(True, CORRECT, answer)
            for i, answer in enumerate(extracted)
        ]

    def close(self) -> None:
        with self._lock:
            for worker in self._pool:
                worker.stop()
            self._pool = []

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, payloads: list[tuple[str, str]]) -> list[str]:
        results: list[str | None] = [None] * len(payloads)
        pending = deque(range(len(payloads)))
        retried = [False] * len(payloads)
        with self._lock:
            try:
                while pending or any(w.job is not None for w in self._pool):
                    self._top_up()
                    for worker in self._pool:
                        if worker.ready and worker.job is None and pending:
                            job = pending.popleft()
                            try:
                                worker.assign(job, payloads[job], self.timeout_s)
                            except OSError:  # died while idle (killed, OOM): retry elsewhere
                                pending.appendleft(job)
                                self._replace(worker)
                    self._collect(results, pending, retried)
            finally:
                # An exception (e.g. KeyboardInterrupt) can leave workers mid-item; their late
                # replies would be read as answers to the next call's items.
                for worker in [w for w in self._pool if w.job is not None]:
                    self._replace(worker)
        return [PARSE_ERROR if r is None else r for r in results]

    def _collect(self, results: list[str | None], pending: deque[int], retried: list[bool]) -> None:
        """Wait for the next reply, crash or deadline and book it."""
        live = [w for w in self._pool if w.job is not None or not w.ready]
        timeout = max(0.0, min(w.deadline for w in live) - time.monotonic())
        readable = wait([w.conn for w in live], timeout)
        for worker in live:
            if worker.conn not in readable:
                continue
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                if worker.job is None:
                    self._failed_starts += 1
                    if self._failed_starts > self.workers:
                        self._discard(worker)
                        raise RuntimeError(
                            f"grading workers keep dying during startup (last exit code "
                            f"{worker.proc.exitcode}, traceback on stderr); workers are spawned, "
                            "so a main module without an `if __name__ == '__main__':` guard is a "
                            "common cause"
                        ) from None
                    self._replace(worker)
                    continue
                # Only this worker's item is affected: the others are on other workers or pending.
                self.stats.crashes += 1
                if worker.died_of_outside_kill() and not retried[worker.job]:
                    retried[worker.job] = True
                    pending.appendleft(worker.job)
                else:
                    results[worker.job] = PARSE_ERROR
                worker.job = None
                self._replace(worker)
                continue
            if message == _READY:
                worker.ready = True
                self._failed_starts = 0
                continue
            assert worker.job is not None
            reason, retire = message
            results[worker.job] = reason
            worker.job = None
            if retire:  # it hit or neared its memory cap (see _worker_main)
                self.stats.memory_exhausted += 1
                self._replace(worker)
        now = time.monotonic()
        for worker in [w for w in self._pool if w.deadline <= now]:
            if worker.job is not None:
                results[worker.job] = TIMEOUT
                worker.job = None
                self.stats.timeouts += 1
                self._replace(worker)
            elif not worker.ready:
                self._discard(worker)
                raise RuntimeError(f"grading worker not ready after {_STARTUP_TIMEOUT_S:.0f} s")

    def _start_worker(self) -> _Worker:
        self.stats.started += 1
        return _Worker(self._ctx, self.worker_memory_bytes)

    def _top_up(self) -> None:
        while len(self._pool) < self.workers:
            self._pool.append(self._start_worker())

    def _replace(self, worker: _Worker) -> None:
        worker.stop()
        self.stats.replaced += 1
        self._pool[self._pool.index(worker)] = self._start_worker()

    def _discard(self, worker: _Worker) -> None:
        worker.stop()
        self._pool.remove(worker)

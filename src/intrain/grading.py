"""Answer grading: last-``\\boxed{}`` extraction plus a math-verify comparison in worker processes.

Why worker processes rather than threads or in-process calls:
- math-verify turns untrusted model text into SymPy objects (``parse_expr`` evaluates), so that
  text is only ever handed to a worker; the parent does pure string work.
- SymPy can hang inside C-level big-integer arithmetic (``\\boxed{9^{9^{9}}}``) where no signal is
  delivered, so the only reliable bound is killing the process.
- math-verify's own timeouts use ``signal.alarm``, which raises outside the main thread, and TRL
  calls reward functions from threads. Workers run math-verify with its timeouts off and the
  parent enforces one wall-clock deadline per item.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["Grader", "Verdict", "extract_boxed", "normalize_answer"]

CORRECT = "correct"
WRONG = "wrong"
NO_ANSWER = "no_answer"
TIMEOUT = "timeout"
PARSE_ERROR = "parse_error"


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # one of: "correct", "wrong", "no_answer", "timeout", "parse_error"
    extracted: str | None  # the extracted boxed answer, if any


# ----------------------------------------------------------------------------- string helpers
# Everything in this section is plain string work: safe on untrusted text in the parent.

# The lookahead keeps longer command names such as \boxedanswer from matching.
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_SPACE_FORM_TOKEN_RE = re.compile(r"[^\s$]+")


def _matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or None if unbalanced."""
    depth = 0
    i = open_idx
    while i < len(text):
        char = text[i]
        if char == "\\":
            # An escaped \{ or \} is a literal set brace, and \\ must not escape what follows it.
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``.

    Returns None when there is no box, when the last box is unbalanced (usually a truncated
    generation: an earlier box is then an intermediate result, not the final answer) or empty.
    """
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    after = boxes[-1].end()
    start = after
    while start < len(text) and text[start].isspace():
        start += 1
    if start < len(text) and text[start] == "{":
        end = _matching_brace(text, start)
        content = None if end is None else text[start + 1 : end]
    elif start > after:  # "\boxed 5": TeX's space form, read up to whitespace or the closing $
        token = _SPACE_FORM_TOKEN_RE.match(text, start)
        content = None if token is None else token.group()
    else:
        content = None
    if content is None or not content.strip():
        return None
    return content.strip()


# Commands whose braced argument is kept and whose name is dropped when comparing as strings.
_UNWRAP_RE = re.compile(r"\\(?:boxed|fbox|text|textbf|textit|textrm|mathrm|mbox)\s*\{")
# Sizing and spacing commands carry no meaning for an answer; the lookahead spares \rightarrow.
_NOISE_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])|\\[!,;: ]")
_WHITESPACE_RE = re.compile(r"\s+")


def _unwrap(text: str) -> str:
    parts: list[str] = []
    pos = 0
    for match in _UNWRAP_RE.finditer(text):
        if match.start() < pos:  # nested inside a span already copied
            continue
        end = _matching_brace(text, match.end() - 1)
        if end is None:
            break
        parts.append(text[pos : match.start()])
        parts.append(_unwrap(text[match.end() : end]))
        pos = end + 1
    parts.append(text[pos:])
    return "".join(parts)


def normalize_answer(text: str) -> str:
    """Canonical string form of an answer: lowercase, no ``$``, ``\\boxed{}``, ``\\text{}``,
    ``\\left``/``\\right``, LaTeX spacing, whitespace or trailing periods."""
    text = _NOISE_RE.sub("", _unwrap(text))
    text = _WHITESPACE_RE.sub("", text.replace("$", ""))
    return text.lower().rstrip(".")


def _same_string(gold: str, answer: str) -> bool:
    normalized = normalize_answer(gold)
    return normalized != "" and normalized == normalize_answer(answer)


# ----------------------------------------------------------------------------- worker side
# Only the functions below touch math-verify / SymPy, and only inside worker processes.

# "1\,000": math-verify reads a thin space between digit groups as a product (1*000 = 0).
_DIGIT_GROUP_SPACE_RE = re.compile(r"(?<=\d)\\,(?=\d{3}(?!\d))")
# "\boxed{5.}": math-verify cannot parse a sentence-final period; "..." is left alone.
_TRAILING_PERIOD_RE = re.compile(r"(?<!\.)\.$")
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[a-z]{3,}")


def _to_latex(answer: str) -> str:
    """Wrap an answer in ``\\boxed{}``: math-verify only reads LaTeX inside a math environment
    (a bare ``\\frac{\\sqrt2}{2}`` parses to nothing, a bare ``(1, 2)`` to 2)."""
    # A gold that arrives as "$...$" is unwrapped; one that arrives boxed can stay as it is,
    # since math-verify reads nested boxes itself.
    answer = answer.strip()
    if len(answer) >= 2 and answer[0] == answer[-1] == "$":
        answer = answer.strip("$").strip()
    answer = _DIGIT_GROUP_SPACE_RE.sub("", answer)
    answer = _TRAILING_PERIOD_RE.sub("", answer)
    answer = answer.replace(r"\varnothing", r"\emptyset")  # math-verify only knows \emptyset
    return f"\\boxed{{{answer}}}"


def _first_math(parsed: list[Any]) -> Any:
    """The first SymPy object in a ``parse`` result; the rest is the raw-string fallback."""
    from sympy import Basic, MatrixBase

    return next((item for item in parsed if isinstance(item, (Basic, MatrixBase))), None)


def _is_letter_product(expr: Any) -> bool:
    from sympy import E, Mul, Pow, Symbol

    if isinstance(expr, Symbol) or expr is E:
        return True
    if isinstance(expr, Mul):
        return all(_is_letter_product(arg) for arg in expr.args)
    if isinstance(expr, Pow):
        return bool(expr.exp.is_Integer and expr.exp > 0) and _is_letter_product(expr.base)
    return False


def _is_text_answer(gold: str, parsed_gold: Any) -> bool:
    """A word answer ("Tuesday", "No such values"), as opposed to a formula.

    math-verify does not reject words: it parses them as a commutative product of one-letter
    symbols (Tuesday -> E*da*s*t*u*y), so anagrams such as listen/silent compare equal. Such golds
    are therefore compared as normalised strings. Both tests are needed: the parse shape alone
    would also catch ``\\alpha\\beta``, and the letter run alone would catch
    ``\\begin{pmatrix}``. Cost: a product of three or more bare letters (``xyz``) must be written
    in the gold's order.
    """
    letters = _LATEX_COMMAND_RE.sub(" ", normalize_answer(gold))
    return _is_letter_product(parsed_gold) and _WORD_RE.search(letters) is not None


def _compare(gold: str, pred: str) -> str:
    """Reason for one (gold, extracted prediction) pair whose normalised strings differ (the
    parent settles string matches itself). Runs in a worker only."""
    from math_verify import parse, verify

    # math-verify's timeouts off: they would report a timeout as an ordinary [] / False, and
    # cannot interrupt C-level work anyway; the parent's deadline covers both.
    parsed_gold = _first_math(parse(_to_latex(gold), parsing_timeout=None))
    if parsed_gold is None or _is_text_answer(gold, parsed_gold):
        # Only a string match can be trusted here, and the parent has ruled that out
        # (_same_string). For a word answer that is a real comparison (wrong); for a gold
        # math-verify cannot read at all it proves nothing.
        return PARSE_ERROR if parsed_gold is None else WRONG
    parsed_pred = _first_math(parse(_to_latex(pred), parsing_timeout=None))
    if parsed_pred is None:
        return PARSE_ERROR
    # Gold first: math-verify is asymmetric on purpose (e.g. an inequality gold accepts an
    # interval prediction, not the other way round).
    return CORRECT if verify(parsed_gold, parsed_pred, timeout_seconds=None) else WRONG


_READY = "ready"


def _worker_main(conn: Connection) -> None:
    # Ctrl-C belongs to the parent, which kills its workers; a KeyboardInterrupt here would
    # only print tracebacks from every worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # math-verify warns once per process that its timeouts are off; the parent owns them.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Pay for imports, regex compilation and the ANTLR parser before the first deadline starts.
    _compare("1", "1")
    conn.send(_READY)
    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:  # the parent closed the pipe or exited
            return
        try:
            reason = _compare(gold, pred)
        except Exception:
            reason = PARSE_ERROR
        conn.send(reason)


# ----------------------------------------------------------------------------- parent side

# Generous: a fresh spawn imports SymPy and ANTLR (~0.5 s idle, far more on a loaded machine).
_STARTUP_TIMEOUT_S = 120.0


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child_conn,), daemon=True, name="intrain-grader")
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

    def stop(self) -> None:
        # Workers hold no state worth a graceful shutdown, and a hung one ignores polite requests.
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class Grader:
    """Grades completions against gold answers on a persistent pool of worker processes.

    Thread-safe: concurrent ``grade`` calls are serialised on one lock, and each call already
    spreads its items over all workers. Workers start on the first ``grade``; a worker that
    crashes or overruns ``timeout_s`` on an item is killed and replaced.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 10.0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
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
        # Settled here, without a worker: no box means no answer, and answers that match as
        # normalised strings are equal without paying for math-verify's ANTLR parse (2-60 ms,
        # the dominant cost), which is what most correct answers in RL batches look like.
        payloads = {
            i: (gold, answer)
            for i, (gold, answer) in enumerate(zip(golds, extracted))
            if answer is not None and not _same_string(gold, answer)
        }
        judged = dict(zip(payloads, self._run(list(payloads.values()))))
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
        crashes = [0] * len(payloads)
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
                    self._collect(results, pending, crashes)
            finally:
                # An exception (e.g. KeyboardInterrupt) can leave workers mid-item; their late
                # replies would be read as answers to the next call's items.
                for worker in [w for w in self._pool if w.job is not None]:
                    self._replace(worker)
        return [PARSE_ERROR if r is None else r for r in results]

    def _collect(self, results: list[str | None], pending: deque[int], crashes: list[int]) -> None:
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
                # One retry, since the kill may have come from outside (OOM killer, an operator);
                # an input that crashes a worker twice is scored as unparseable.
                crashes[worker.job] += 1
                if crashes[worker.job] < 2:
                    pending.appendleft(worker.job)
                else:
                    results[worker.job] = PARSE_ERROR
                worker.job = None
                self._replace(worker)
                continue
            if message == _READY:
                worker.ready = True
                self._failed_starts = 0
            else:
                assert worker.job is not None
                results[worker.job] = message
                worker.job = None
        now = time.monotonic()
        for worker in [w for w in self._pool if w.deadline <= now]:
            if worker.job is not None:
                results[worker.job] = TIMEOUT
                worker.job = None
                self._replace(worker)
            elif not worker.ready:
                self._discard(worker)
                raise RuntimeError(f"grading worker not ready after {_STARTUP_TIMEOUT_S:.0f} s")

    def _top_up(self) -> None:
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx))

    def _replace(self, worker: _Worker) -> None:
        worker.stop()
        self._pool[self._pool.index(worker)] = _Worker(self._ctx)

    def _discard(self, worker: _Worker) -> None:
        worker.stop()
        self._pool.remove(worker)

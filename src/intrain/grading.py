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
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["MAX_ANSWER_CHARS", "Grader", "GraderStats", "Verdict", "extract_boxed", "normalize_answer"]

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
# What brace matching has to look at: an escape pair (\{, \}, \\) or a run of braces. Ordinary
# characters are skipped inside the regex engine and a run of braces is one step, so that
# megabyte-long model outputs cost the parent milliseconds rather than seconds.
_BRACE_RUN_RE = re.compile(r"\\.|\{+|\}+", re.DOTALL)


def _matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or None if unbalanced."""
    depth = 0
    # An escaped \{ or \} is a literal set brace, and \\ must not escape what follows it.
    for token in _BRACE_RUN_RE.finditer(text, open_idx):
        run = token.group()
        if run[0] == "{":
            depth += len(run)
        elif run[0] == "}":
            if len(run) >= depth:
                return token.start() + depth - 1
            depth -= len(run)
    return None


def _brace_pairs(text: str) -> dict[int, int]:
    """Every balanced ``{`` index mapped to its ``}``, in one linear pass (escapes as above)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []  # indices of the braces still open, innermost last
    for token in _BRACE_RUN_RE.finditer(text):
        run = token.group()
        if run[0] == "{":
            stack.extend(range(token.start(), token.end()))
        elif run[0] == "}":
            closed = min(len(run), len(stack))  # a "}" with nothing open closes nothing
            if closed:
                opened = stack[len(stack) - closed :]
                del stack[len(stack) - closed :]
                pairs.update(zip(reversed(opened), range(token.start(), token.start() + closed)))
    return pairs


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``.

    Returns None when there is no box, when the last box is unbalanced (usually a truncated
    generation: an earlier box is then an intermediate result, not the final answer) or empty.
    """
    # maxlen=1 keeps only the last match: a flood of boxes costs no memory.
    last_box = deque(_BOX_RE.finditer(text), maxlen=1)
    if not last_box:
        return None
    after = last_box[0].end()
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
    """``text`` with each ``\\text{...}``-like wrapper replaced by its content, nested ones too.

    From the first wrapper whose brace is never closed on, the text is kept as it is. Iterative and
    linear on purpose: model text can nest wrappers thousands deep, which a recursive version
    turns into a RecursionError, and a per-wrapper brace search into quadratic time, in the parent.
    """
    matches = list(_UNWRAP_RE.finditer(text))
    if not matches:  # the common case, and it skips the brace scan
        return text
    pairs = _brace_pairs(text)
    dropped: list[tuple[int, int]] = []  # [start, end) spans to cut: command names and their "}"
    for match in matches:
        close = pairs.get(match.end() - 1)
        if close is None:
            # A balanced wrapper cannot contain this unclosed brace, so nothing already cut lies
            # beyond this point.
            break
        dropped.append((match.start(), match.end()))
        dropped.append((close, close + 1))
    dropped.sort()
    parts: list[str] = []
    pos = 0
    for start, end in dropped:
        parts.append(text[pos:start])
        pos = end
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


# A plain integer in its one canonical spelling (no sign on 0, no leading zeros, no separators), short
# enough that math-verify compares it exactly.
_CANONICAL_INT_RE = re.compile(r"0|-?[1-9][0-9]{0,14}")


def _distinct_integers(gold: str, answer: str) -> bool:
    """Two different integers, each spelt canonically: unequal without math-verify. Most wrong
    answers to integer-answer problems (the arithmetic family, AIME-style sets) look like this.
    Only `$`, surrounding space and a final period are dropped first: normalize_answer's unwrapping
    would join "1\\text{2}" into "12", which math-verify reads otherwise."""
    a, b = _bare(gold), _bare(answer)
    return a != b and _CANONICAL_INT_RE.fullmatch(a) is not None and _CANONICAL_INT_RE.fullmatch(b) is not None


def _bare(text: str) -> str:
    return text.strip().rstrip(".").strip().strip("$").strip()


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

# What a worker may never do: start programs, signal processes (the parent included), change the
# file system, open sockets, call C through ctypes, or lift its own limits. Parsing and comparing
# maths needs none of it. This is defence in depth, not the guarantee: math-verify only hands
# strings of digits and operators to SymPy's evaluating parser, and audit hooks can be bypassed
# by code that already runs (PEP 578). The point is that a future math-verify or SymPy change
# that evaluates model text does not turn straight into a shell.
_BLOCKED_AUDIT_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "pty.spawn",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.chmod",
        "os.chown",
        "os.utime",
        "os.putenv",
        "os.unsetenv",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.rmtree",
        "shutil.chown",
        "shutil.make_archive",
        "shutil.unpack_archive",
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.getaddrinfo",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.call_function",
        "ctypes.cdata",
        "ctypes.addressof",
        "ctypes.string_at",
        "ctypes.wstring_at",
        "resource.setrlimit",
        "resource.prlimit",
        "sys.addaudithook",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _deny_side_effects(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook of a grading worker: refuse the events above and opening files for writing."""
    if event in _BLOCKED_AUDIT_EVENTS:
        raise PermissionError(f"{event} is not allowed in a grading worker")
    if event == "open":
        # args are (path, mode, flags); os.open passes mode=None, and unknown flags count as writes.
        mode, flags = args[1], args[2]
        writes_by_mode = isinstance(mode, str) and any(char in mode for char in "wax+")
        writes_by_flags = not isinstance(flags, int) or flags < 0 or bool(flags & _WRITE_FLAGS)
        if writes_by_mode or writes_by_flags:
            raise PermissionError(f"opening {args[0]!r} for writing is not allowed in a grading worker")


def _mapped_bytes() -> int | None:
    """Address space this process has mapped (Linux), or None where /proc is unavailable."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _harden_worker(memory_bytes: int | None) -> int | None:
    """Limits for a worker that is about to take untrusted text; call after the warm-up.

    ``memory_bytes`` is address space granted on top of what the worker maps once started. A cap
    relative to that, rather than an absolute one, because spawn re-imports the parent's main
    module in every worker and a training script's imports (torch) map gigabytes before any
    grading happens. Past the cap, allocations fail: math-verify swallows the MemoryError and
    scores the item as not equal (in seconds, where building the number would have run into the
    deadline), one that reaches _worker_main retires the worker, and C code that aborts kills it;
    in every case only this worker's item is affected.

    Returns the mapped size past which the worker should retire after its reply (None: never).
    """
    import resource

    # A worker that aborts on an allocation failure must not leave a core file of its heap.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    baseline = _mapped_bytes()
    retire_above = None
    if memory_bytes is not None and baseline is not None:
        cap = baseline + memory_bytes
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        # Soft and hard both: code running in the worker must not be able to lift it again.
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        # SymPy's caches can keep an attack's huge numbers alive; with half the allowance held,
        # innocent items that follow would fail to allocate, so a fresh worker takes over.
        retire_above = baseline + memory_bytes // 2
    # Lazy imports still work; their bytecode is just not cached (that would be a write).
    sys.dont_write_bytecode = True
    sys.addaudithook(_deny_side_effects)
    return retire_above


def _worker_main(conn: Connection, memory_bytes: int | None) -> None:
    # Ctrl-C belongs to the parent, which kills its workers; a KeyboardInterrupt here would
    # only print tracebacks from every worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # math-verify warns once per process that its timeouts are off; the parent owns them.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Pay for imports, regex compilation and the ANTLR parser before the first deadline starts,
    # and before the memory cap is measured from what the worker holds.
    _compare("1", "1")
    retire_above = _harden_worker(memory_bytes)
    conn.send(_READY)
    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:  # the parent closed the pipe or exited
            return
        retire = False
        try:
            reason = _compare(gold, pred)
        except MemoryError:
            # The cap was hit mid-parse. Python recovers, but SymPy's caches may hold half-built
            # state and the heap is fragmented: reply, then make way for a fresh worker.
            reason, retire = PARSE_ERROR, True
        except Exception:
            reason = PARSE_ERROR
        if retire_above is not None:
            try:
                retire = retire or (_mapped_bytes() or 0) > retire_above
            except MemoryError:  # too close to the cap even to read /proc: retire, do not die
                retire = True
        conn.send((reason, retire))
        if retire:
            return


# ----------------------------------------------------------------------------- parent side

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

"""The worker side of grading: the math-verify comparison and the sandbox it runs in.

A module of its own because it is the only code that touches math-verify / SymPy, and only inside
worker processes, where a hang can be killed and the process is hardened before it reads model
text. The parent imports it just for ``_worker_main``, which spawned workers import by this module
path; SymPy and math-verify themselves are imported lazily, in the worker.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from intrain.grading.answers import normalize_answer
from intrain.grading.verdicts import CORRECT, PARSE_ERROR, WRONG

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

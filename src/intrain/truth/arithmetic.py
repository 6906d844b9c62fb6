r"""Where an attempt at an arithmetic-family problem first goes wrong.

The generator (:mod:`intrain.data.arithmetic`) writes one ``"a op b = c"`` equation per
reference paragraph, so the problem row itself carries its chain of operations:
:func:`reference_chain` reads it back.  :func:`first_error` walks an attempt's substeps against that
chain.  It sees what a false-equation check cannot: the policy's commonest slip is a *true*
equation on the *wrong* operands (``2 * 2 = 4`` where the problem needs ``2 * 8``).
:func:`first_wrong_substep` is the older, problem-free check (false equations only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from intrain.data.problem import Problem
from intrain.grading import extract_boxed, normalize_answer
from intrain.steps import split_substeps

from .expressions import Equation, evaluate_expression, find_equations

__all__ = [
    "ChainStep",
    "ErrorKind",
    "FirstError",
    "apply_op",
    "first_error",
    "first_wrong_substep",
    "reference_chain",
]

_SIMPLE_EQ_RE = re.compile(r"^\s*(-?\d+)\s*([+\-*\u00d7])\s*(-?\d+)\s*$")
_PLAIN_NUMBER_RE = re.compile(r"\s*[-\u2212]?\s*(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d+)?\s*")
_NUMBER_RE = re.compile(r"(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d+)?")
_BOX_WITH_UNIT_RE = re.compile(r"\s*(-?\d+)\s*[A-Za-z ]*\.?\s*")


def apply_op(op: str, a: int, b: int) -> int:
    """``a op b`` for the family's three operators (``+``, ``-``, ``*``)."""
    return a + b if op == "+" else a - b if op == "-" else a * b


@dataclass(frozen=True)
class ChainStep:
    """One operation of a problem's chain, as its reference paragraph writes it.

    ``paras[para][eq_start:eq_end]`` is ``"a op b = c"``; ``carried_left`` is None for the first
    operation, else whether ``a`` (True) or ``b`` (False) is the previous result."""

    para: int
    op: str
    a: int
    b: int
    c: int
    carried_left: bool | None
    eq_start: int
    eq_end: int


def reference_chain(problem: Problem) -> tuple[list[str], list[ChainStep]]:
    """The reference's paragraphs and its chain of operations.

    Raises ``ValueError`` unless the reference is in the generator's format: each paragraph holds
    at most one equation, each equation is a true ``"a op b = c"`` on the previous result, and
    the last result is the answer."""
    paras = problem.reference_solution.split("\n\n")
    chain: list[ChainStep] = []
    prev: int | None = None
    for i, para in enumerate(paras):
        eqs = find_equations(para)
        if not eqs:
            continue
        if len(eqs) != 1:
            raise ValueError(f"{problem.id}: reference paragraph {i + 1} has {len(eqs)} equations, expected 1")
        eq = eqs[0]
        m = _SIMPLE_EQ_RE.match(eq.lhs)
        if m is None or not re.fullmatch(r"\s*-?\d+\s*", eq.rhs):
            raise ValueError(f"{problem.id}: paragraph {i + 1}: not an 'a op b = c' equation: {eq.lhs} = {eq.rhs}")
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(eq.rhs)
        op = "*" if op == "\u00d7" else op
        if apply_op(op, a, b) != c:
            raise ValueError(f"{problem.id}: reference paragraph {i + 1} has a false equation")
        if prev is None:
            carried = None
        elif a == prev:
            carried = True
        elif b == prev:
            carried = False
        else:
            raise ValueError(f"{problem.id}: paragraph {i + 1} does not use the previous result {prev}")
        chain.append(ChainStep(i, op, a, b, c, carried, eq.start, eq.end))
        prev = c
    if not chain:
        raise ValueError(f"{problem.id}: reference solution has no equations")
    if str(chain[-1].c) != problem.answer.strip():
        raise ValueError(f"{problem.id}: last equation result {chain[-1].c} != answer {problem.answer}")
    return paras, chain


def first_wrong_substep(substeps_texts: list[str]) -> int | None:
    """1-based index of the first substep containing an equation whose sides differ
    (exact rational comparison); ``None`` when every equation holds."""
    for idx, step in enumerate(substeps_texts, start=1):
        for eq in find_equations(step):
            lv, rv = evaluate_expression(eq.lhs), evaluate_expression(eq.rhs)
            if lv is not None and rv is not None and lv != rv:
                return idx
    return None


ErrorKind = Literal["false_equation", "wrong_operands", "wrong_answer", "none"]


@dataclass(frozen=True)
class FirstError:
    """The first critical error of an attempt (see :func:`first_error`).

    ``operations`` are the chain operations (0-based) the erroneous substep should have carried
    out: those it did correctly, then the one that was due when it went wrong (empty when every
    operation was already done, or when there is no error).  ``expected`` is the value due at
    the error: that operation's result, or the answer once every operation is done."""

    location: int | None
    kind: ErrorKind
    operations: range = range(0)
    expected: int | None = None


NO_ERROR = FirstError(None, "none")


def _is_computation(eq: Equation) -> bool:
    return not (_PLAIN_NUMBER_RE.fullmatch(eq.lhs) and _PLAIN_NUMBER_RE.fullmatch(eq.rhs))


def _numbers_in(text: str) -> set[Fraction]:
    return {v for m in _NUMBER_RE.finditer(text) if (v := evaluate_expression(m.group())) is not None}


def _operations_in(eq: Equation) -> int:
    """How many operations an equation writes: its longer side's numbers, minus one."""
    return max(len(_NUMBER_RE.findall(eq.lhs)), len(_NUMBER_RE.findall(eq.rhs))) - 1


def _reached(values: list[int], done: int, value: Fraction, numbers: set[Fraction], operations: int) -> int | None:
    """The chain operation (index) a computation of ``value`` completes, if any: the due one, or a
    later one when the computation writes enough operations or starts from the result before it
    (the operations in between were done in words)."""
    for j in range(done, len(values)):
        if values[j] == value and (j == done or operations > j - done or values[j - 1] in numbers):
            return j
    return None


def _is_gold(boxed: str, gold: int) -> bool:
    """A box holding the gold number (as an expression, or followed by a unit word: ``14 apples``)."""
    value = evaluate_expression(normalize_answer(boxed))
    unit = _BOX_WITH_UNIT_RE.fullmatch(boxed)
    return value == gold or (unit is not None and int(unit.group(1)) == gold)


def first_error(problem: Problem, completion: str, separator: str = "\n\n") -> FirstError:
    r"""The first substep of ``completion`` that goes wrong on ``problem``'s chain of operations.

    The chain ``c_0, c_1, ...`` is read off the reference (:func:`reference_chain`); substeps
    are :func:`~intrain.steps.split_substeps` chunks, judged in order while tracking how many
    operations have been done correctly.  Within a substep, each equation is judged in the order
    written:

    * an equation whose sides differ is a ``false_equation`` (``"36 = 4"`` included); a true
      one without an operator (``"19 = 19"``) says nothing and is skipped;
    * a true one whose value is the due chain value advances the chain. Operands are not
      compared, only the value that carries forward: ``8 * 2 = 16`` for ``2 * 8`` is fine, and
      so (a blind spot) is ``4 * 4 = 16``.  A later chain value advances it too when the
      equation writes that many operations (``(12 + 7) * 3 = 57``) or uses the value just before
      it (``16 * 2 = 32`` after "so she has 16 apples" in words); otherwise hitting a later
      chain value is a coincidence (``10 - 7 = 3`` for ``10 - 6 = 4``, then ``4 - 1 = 3``);
    * one whose value was already reached is a restatement, which is fine (the other blind
      spot: a wrong computation that happens to land on an earlier value);
    * any other value (wrong operand, wrong operator, a skipped operation) is ``wrong_operands``,
      unless a later equation of the same substep uses it to reach a chain value (helper values
      of a decomposition: ``12 * 3 = 36 and 7 * 3 = 21, so 36 + 21 = 57``). A helper value used
      only in a *later* substep is still reported: a limit of judging per substep.

    The answer: when the last ``\boxed{}`` of the completion (what the grader reads) holds the
    gold answer there is no error at all, whatever came before.  Otherwise, if no earlier
    substep went wrong, the substep holding that box is the error (``wrong_answer``: a slip in
    copying the result, or a box before the last operation).  A completion without a box whose
    computations are all consistent has no error found: the slip (stopping early, a wrong value
    stated in words) is not where equations can see it.  Prose-only substeps (an intro, a
    restated problem, headings) are never errors, since they cannot be judged.

    Raises ``ValueError`` when ``problem``'s reference is not in the generator's format.
    """
    _, chain = reference_chain(problem)
    gold = chain[-1].c
    final_box = extract_boxed(completion)
    if final_box is not None and _is_gold(final_box, gold):
        return NO_ERROR
    substeps = split_substeps(completion, separator)
    box_at = None
    if final_box is not None:
        box_at = max((s.index for s in substeps if extract_boxed(s.text) is not None), default=None)
    values = [st.c for st in chain]
    done = 0

    def error(location: int, kind: ErrorKind, start: int, due: int) -> FirstError:
        ops = range(start, min(due + 1, len(chain)))
        return FirstError(location, kind, ops, values[due] if due < len(chain) else gold)

    for sub in substeps:
        start = done
        helpers: dict[Fraction, int] = {}  # stray value -> operation due when it was written
        for eq in find_equations(sub.text):
            lv, rv = evaluate_expression(eq.lhs), evaluate_expression(eq.rhs)
            if lv is None or rv is None:  # pragma: no cover - find_equations only yields evaluable sides
                continue
            if lv != rv:
                return error(sub.index, "false_equation", start, done)
            if not _is_computation(eq):
                continue
            numbers = _numbers_in(eq.lhs) | _numbers_in(eq.rhs)
            ahead = _reached(values, done, lv, numbers, _operations_in(eq))
            if ahead is None and lv not in values[:done]:
                helpers.setdefault(lv, done)
                continue
            for used in numbers:
                helpers.pop(used, None)
            done = done if ahead is None else ahead + 1
        if helpers:
            return error(sub.index, "wrong_operands", start, min(helpers.values()))
        if sub.index == box_at:
            return error(sub.index, "wrong_answer", start, done)
    return NO_ERROR

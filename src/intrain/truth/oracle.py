r"""Scripted stand-ins for the two models of the arithmetic family, built on its ground truth.

:func:`make_faulty_attempt` plays a student who slips once (the warm-up's synthetic examples and
tests know where by construction); :func:`oracle_intervention` plays a perfect (or, with noise, a
controllably imperfect) proposer that names the true first error (:func:`first_error`) and writes
the correct replacement step.  Neither ever states the final answer in its replacement step.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence

from intrain.data.problem import Problem
from intrain.interventions import leaks_answer
from intrain.steps import split_substeps

from .arithmetic import ChainStep, apply_op, first_error, reference_chain

__all__ = ["make_faulty_attempt", "oracle_intervention"]


def _equation_text(a: int, op: str, b: int, c: int, sym: str | None = None) -> str:
    return f"{a} {sym or op} {b} = {c}"


# ---------------------------------------------------------------------------------------------
# Faulty attempts (a student's wrong work, with its error known)
# ---------------------------------------------------------------------------------------------

_INTROS = [
    "Let's solve this step by step.",
    "I'll work through the operations one at a time.",
    "Let me compute this carefully.",
    "We go through it step by step.",
]
_FINALS = [
    "The final answer is \\boxed{{{a}}}.",
    "So the answer is \\boxed{{{a}}}.",
    "Therefore, the final answer is \\boxed{{{a}}}.",
]
_CONNECTOR_SWAPS = {
    "First": ["First", "To start", "Firstly"],
    "Next": ["Next", "Then", "After that"],
    "Then": ["Then", "Next", "After that"],
    "Finally": ["Finally", "Lastly", "Last"],
}
_AFTER_PREFIXES = ["", "", "So ", "Now, ", "Then, "]
_METHODS = {
    "+": [
        "by adding {b} to {a} in two parts",
        "by adding the tens and the ones separately",
        "by counting up {b} from {a}",
    ],
    "-": ["by counting down {b} from {a}", "by subtracting the tens and the ones separately"],
    "*": ["by multiplying the tens and the ones separately and adding the parts", "by adding up {b} copies of {a}"],
}
_INTERVENTION_LEADS = ["", "", "Let me redo this step carefully. ", "Wait, I should recompute this. "]


def _slips(st: ChainStep, a: int, b: int) -> list[int]:
    c = apply_op(st.op, a, b)
    cands = [c + 1, c - 1, c + 10, c - 10]
    s = str(c)
    if len(s) >= 2 and s[-1] != s[-2]:
        swapped = s[:-2] + s[-1] + s[-2]
        if not swapped.startswith("0"):
            cands.append(int(swapped))
    for other in ("+", "-", "*"):
        if other != st.op:
            cands.append(apply_op(other, a, b))
    return [w for w in dict.fromkeys(cands) if w != c]


def _contains_number(text: str, number: str) -> bool:
    return re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text) is not None


def _pick_connector(para: str, rng: random.Random) -> tuple[str, str] | None:
    """Choose a rephrasing of the paragraph's opening word: (old prefix, new prefix)."""
    for word, options in _CONNECTOR_SWAPS.items():
        if para.startswith(word + " ") or para.startswith(word + ","):
            return word, rng.choice(options)
    if para.startswith("After "):
        pre = rng.choice(_AFTER_PREFIXES)
        return ("After ", pre + "after ") if pre else None
    return None


def _apply_connector(para: str, swap: tuple[str, str] | None) -> str:
    if swap is None or not para.startswith(swap[0]):
        return para
    return swap[1] + para[len(swap[0]) :]


def make_faulty_attempt(
    problem: Problem, rng: random.Random, slip_weights: Sequence[float] | None = None
) -> tuple[str, int, str]:
    r"""A plausible wrong attempt at an arithmetic-family ``problem``.

    Returns ``(attempt_text, location, intervention)``:

    * ``attempt_text`` follows the reference's paragraph format (steps separated by ``"\n\n"``,
      sometimes with an intro paragraph and varied connectors / ``×`` signs); exactly one step's
      result is wrong by a plausible slip (±1, ±10, swapped last digits, or the result of the
      wrong operation), later steps carry the wrong value consistently, and it ends with a wrong
      ``\boxed{}`` answer;
    * ``location`` is the 1-based index of the wrong step among ``attempt_text.split("\n\n")``
      (what :func:`~intrain.truth.arithmetic.first_wrong_substep` and
      :func:`~intrain.truth.arithmetic.first_error` return on it);
    * ``intervention`` is a corrected replacement for that step in the student's voice.  It never
      contains the final answer: for an earlier step it is the corrected step (its result is an
      intermediate value); for the final computation it only names the method, e.g.
      ``"Let me recompute 19 - 5 carefully by counting down 5 from 19."``.

    The slip falls in each computation equally often, or, with ``slip_weights``, in the k-th
    computation in proportion to ``slip_weights[k]`` (computations past the list take its last
    weight).

    Raises ``ValueError`` if the reference is not in the arithmetic family's format.
    """
    paras, steps = reference_chain(problem)
    weights = None
    if slip_weights is not None:
        weights = [slip_weights[min(k, len(slip_weights) - 1)] for k in range(len(steps))]
    correct_final = steps[-1].c
    allow_neg = any(v < 0 for st in steps for v in (st.a, st.b, st.c))
    sym = "\u00d7" if rng.random() < 0.3 else "*"

    for _ in range(100):
        j = rng.randrange(len(steps)) if weights is None else rng.choices(range(len(steps)), weights)[0]
        st = steps[j]
        slips = _slips(st, st.a, st.b)
        rng.shuffle(slips)
        chosen: list[tuple[int, int, int]] | None = None
        for w in slips:
            if w < 0 and not allow_neg:
                continue
            vals = [(s.a, s.b, s.c) for s in steps]
            vals[j] = (st.a, st.b, w)
            cur, ok = w, True
            for k in range(j + 1, len(steps)):
                sk = steps[k]
                a, b = (cur, sk.b) if sk.carried_left else (sk.a, cur)
                cur = apply_op(sk.op, a, b)
                if cur < 0 and not allow_neg:
                    ok = False
                    break
                vals[k] = (a, b, cur)
            if ok and cur != correct_final:
                chosen = vals
                break
        if chosen is not None:
            break
    else:  # pragma: no cover - every step has several valid slips
        raise ValueError(f"{problem.id}: could not build a faulty attempt")

    out_paras = list(paras)
    for k, sk in enumerate(steps):
        a, b, c = chosen[k]
        p = out_paras[sk.para]
        eq = _equation_text(a, sk.op, b, c, sym if sk.op == "*" else None)
        out_paras[sk.para] = p[: sk.eq_start] + eq + p[sk.eq_end :]
    swaps = {i: _pick_connector(p, rng) for i, p in enumerate(out_paras)}
    body = [_apply_connector(p, swaps[i]) for i, p in enumerate(out_paras)]
    # The corrected version of the wrong step, phrased like the attempt's step.
    st = steps[j]
    wrong_para_idx = st.para
    correct_para = paras[st.para]
    correct_para = (
        correct_para[: st.eq_start]
        + _equation_text(st.a, st.op, st.b, st.c, sym if st.op == "*" else None)
        + correct_para[st.eq_end :]
    )
    correct_para = _apply_connector(correct_para, swaps[wrong_para_idx])

    final_idx = len(paras) - 1
    if "\\boxed" in paras[final_idx]:
        body[final_idx] = rng.choice(_FINALS).format(a=chosen[-1][2])
    else:  # pragma: no cover - generated references always end with the boxed line
        body.append(rng.choice(_FINALS).format(a=chosen[-1][2]))
    offset = 0
    if rng.random() < 0.5:
        body.insert(0, rng.choice(_INTROS))
        offset = 1
    location = wrong_para_idx + 1 + offset

    answer = problem.answer.strip()
    if j < len(steps) - 1:
        intervention = rng.choice(_INTERVENTION_LEADS) + correct_para
    else:
        intervention = ""
    if not intervention or _contains_number(intervention, answer):
        sym_st = sym if st.op == "*" else st.op
        method = rng.choice(_METHODS[st.op]).format(a=st.a, b=st.b)
        intervention = f"Let me recompute {st.a} {sym_st} {st.b} carefully {method}."
        if _contains_number(intervention, answer):
            intervention = "Let me recompute this last operation carefully, one digit at a time."
    return "\n\n".join(body), location, intervention


# ---------------------------------------------------------------------------------------------
# Oracle interventions (a proposer that knows the ground truth)
# ---------------------------------------------------------------------------------------------

_NUDGES = (-2, -1, 1, 2)


def _computation(st: ChainStep, shift: int, with_result: bool) -> str:
    """``"a op b = c"`` with the result shifted, or ``"a op b"`` with the operand the problem
    states shifted (the other one is the carried result)."""
    if with_result:
        return f"{st.a} {st.op} {st.b} = {st.c + shift}"
    if st.carried_left is False:
        return f"{st.a + shift} {st.op} {st.b}"
    return f"{st.a} {st.op} {st.b + shift}"


def _shifted_value(chain: list[ChainStep], operations: range) -> int:
    """What a nudge shifts: the due operation's result, or the last operation's stated operand."""
    k = operations[-1] if operations else len(chain) - 1
    st = chain[k]
    return st.c if k < len(chain) - 1 else st.a if st.carried_left is False else st.b


def _replacement_step(paras: list[str], chain: list[ChainStep], operations: range, nudge: int) -> str:
    """The reference paragraphs of ``operations`` on one line, the last operation of the chain
    without its result (it is the answer).  ``nudge`` shifts the due operation (see
    :func:`_shifted_value`), so the step computes a wrong value."""
    last = len(chain) - 1
    if not operations:  # every operation was done: only the answer is left to write
        return f"So the final answer is the result of {_computation(chain[last], nudge, False)}."
    parts = []
    for k in operations:
        st = chain[k]
        computation = _computation(st, nudge if k == operations[-1] else 0, k < last)
        para = paras[st.para]
        parts.append(para[: st.eq_start] + computation + para[st.eq_end :])
    return " ".join(" ".join(parts).splitlines())


def oracle_intervention(
    problem: Problem,
    completion: str,
    rng: random.Random,
    location_noise: float = 0.0,
    content_noise: float = 0.0,
    separator: str = "\n\n",
) -> str | None:
    r"""A proposer's output, ``<intervention>{"content": ..., "location": N}</intervention>``,
    for the true first error of ``completion`` (:func:`first_error`); ``None`` when it has none.

    The content replaces the erroneous substep in the student's voice: the reference paragraphs
    of the operations that substep should have carried out (the correct computation, e.g.
    ``"Next, we multiply: 19 * 3 = 57."``).  The last operation's result is the answer, so that
    operation is written without it (``"Finally, we subtract: 57 - 43."``), and a wrong box after
    every operation was done gets ``"So the final answer is the result of 57 - 43."``.  The content
    never leaks the answer (:func:`~intrain.interventions.leaks_answer`) and is one line, so the
    JSON that ``parse_intervention`` reads back is plain ``json.dumps`` (LaTeX backslashes double).

    Noise, for studying imperfect proposers: with probability ``location_noise`` the location is
    another substep, uniformly (kept when the attempt has only one); with probability
    ``content_noise`` the due operation is off by a small amount (its result, or the last
    operation's stated operand, shifted by 1 or 2, never onto the answer).  The two are drawn
    independently; the same ``rng`` state gives the same output.

    Raises ``ValueError`` when the reference is not in the generator's format, or when its
    paragraphs cannot be written without the answer (never for generated problems).
    """
    found = first_error(problem, completion, separator)
    if found.location is None:
        return None
    paras, chain = reference_chain(problem)
    answer = problem.answer.strip()
    move_location = rng.random() < location_noise
    slip = rng.random() < content_noise
    content = _replacement_step(paras, chain, found.operations, 0)
    if leaks_answer(content, answer):
        raise ValueError(f"{problem.id}: the replacement step would state the answer: {content!r}")
    location = found.location
    if move_location:
        others = [i for i in range(1, len(split_substeps(completion, separator)) + 1) if i != location]
        location = rng.choice(others) if others else location
    if slip:
        shifted = _shifted_value(chain, found.operations)
        allow_negative = any(v < 0 for st in chain for v in (st.a, st.b, st.c))
        options = [
            text
            for nudge in _NUDGES
            if (allow_negative or shifted + nudge >= 1)
            and not leaks_answer(text := _replacement_step(paras, chain, found.operations, nudge), answer)
        ]
        content = rng.choice(options) if options else content
    payload = json.dumps({"content": content, "location": location}, ensure_ascii=False)
    return f"<intervention>{payload}</intervention>"

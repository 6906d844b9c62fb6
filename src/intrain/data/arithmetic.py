r"""The offline problem family of the embedded default: multi-step integer arithmetic.

Problems are short expressions ("Compute (12 + 7) * 3 - 43.") or word problems ("Mia has 12
apples. She buys 7 more. Then she gives away 5. How many apples does she have now?") built from a
chain of 2-3 operations (+, -, *) over small numbers.  Everything is deterministic by seed.

Reference solutions have one step per paragraph (paragraphs separated by ``"\n\n"``, the InT step
delimiter).  Each computation step contains exactly one plain-text equation ``"a op b = c"``;
the last paragraph is ``"The final answer is \boxed{N}."``.  Guarantees of the generator:

* all operands, intermediate results and the answer are non-negative integers (unless
  ``allow_negative``) and at most ``max_result``;
* the final answer differs from every number that appears earlier (operands and intermediate
  results), so a corrected *earlier* step never leaks the final answer;
* ids are ``f"{id_prefix}-{seed}-{i}"`` and problem texts within one call are distinct.

Because of that format the problem row itself carries its chain of operations; the family's
ground truth (where an attempt first goes wrong, faulty attempts, oracle interventions) reads it
back in :mod:`intrain.truth`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .problem import Problem

__all__ = ["generate_arithmetic"]

# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

# The `source` of generated problems; stages that need ground truth check it.
ARITHMETIC_SOURCE = "arithmetic"

_SYM = {"+": "+", "-": "-", "*": "*"}
_VERB = {"+": "add", "-": "subtract", "*": "multiply"}

# (name, subject pronoun, object pronoun, possessive)
_PEOPLE = [
    ("Mia", "she", "her", "her"),
    ("Leo", "he", "him", "his"),
    ("Ava", "she", "her", "her"),
    ("Sam", "he", "him", "his"),
    ("Noah", "he", "him", "his"),
    ("Emma", "she", "her", "her"),
    ("Omar", "he", "him", "his"),
    ("Priya", "she", "her", "her"),
    ("Ken", "he", "him", "his"),
    ("Lucia", "she", "her", "her"),
    ("Ravi", "he", "him", "his"),
    ("Zoe", "she", "her", "her"),
]
# (items, container)
_ITEMS = [
    ("apples", "bags"),
    ("marbles", "jars"),
    ("stickers", "packs"),
    ("pencils", "boxes"),
    ("cookies", "boxes"),
    ("stamps", "sheets"),
    ("coins", "rolls"),
    ("shells", "buckets"),
    ("cards", "packs"),
    ("beads", "bags"),
]
# op -> list of (problem sentence, solution clause); fields: p (subject), o (object), b, items
_WORD_OPS = {
    "+": [
        ("{p} buys {b} more", "After buying {b} more, {p} has"),
        ("{p} finds {b} more", "After finding {b} more, {p} has"),
        ("a friend gives {o} {b} more", "After getting {b} more, {p} has"),
    ],
    "-": [
        ("{p} gives away {b}", "After giving away {b}, {p} has"),
        ("{p} loses {b}", "After losing {b}, {p} has"),
        ("{p} gives {b} to a friend", "After giving {b} to a friend, {p} has"),
    ],
    "*": [
        ("the number of {items} {p} has becomes {b} times as large", "Multiplying by {b}, {p} has"),
    ],
}
_MUL_WORDS = {2: ("doubles", "Doubling"), 3: ("triples", "Tripling")}
_EXPR_TEMPLATES = ["Compute {e}.", "What is {e}?", "Evaluate {e}.", "Calculate {e}."]
_EXPR_STEP_TEMPLATES = ["{c}, we {v}: {eq}.", "{c}, {eq}.", "{c} we {v}, which gives {eq}."]


@dataclass(frozen=True)
class _Step:
    op: str  # '+', '-', '*'
    a: int  # left operand as written
    b: int  # right operand as written
    c: int  # result
    carried_left: bool | None  # None for the first step; True if a is the previous result


def _eq(step_a: int, op: str, step_b: int, c: int, sym: str | None = None) -> str:
    return f"{step_a} {sym or _SYM[op]} {step_b} = {c}"


def _apply(op: str, x: int, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def _sample_chain(
    rng: random.Random,
    n_ops: int,
    max_operand: int,
    max_multiplier: int,
    max_result: int,
    allow_negative: bool,
    word: bool,
) -> tuple[int, list[_Step], bool] | None:
    """A chain of operations; returns (start, steps, bag_start) or None if this try failed.

    Results stay >= 2 in word problems ("1 pencils" reads badly) and >= 1 in expressions,
    unless ``allow_negative``."""
    lo = 2 if max_operand >= 3 else 1
    min_value = (2 if word else 1) if not allow_negative else -max_result
    start = rng.randint(lo, max_operand)
    steps: list[_Step] = []
    value = start
    bag_start = word and rng.random() < 0.3
    for k in range(n_ops):
        if k == 0 and bag_start:
            b = rng.randint(2, max_multiplier)
            c = start * b
            if c > max_result:
                return None
            steps.append(_Step("*", start, b, c, None))
            value = c
            continue
        feasible = []
        if value + 1 <= max_result:
            feasible.append("+")
        if value - 1 >= min_value:
            feasible.append("-")
        if value >= 2 and value * 2 <= max_result:
            feasible.append("*")
        if not feasible:
            return None
        op = rng.choice(feasible)
        left = True  # carried value on the left
        if op == "+":
            b = rng.randint(lo, max(lo, min(max_operand, max_result - value)))
            if not word and rng.random() < 0.25:
                left = False
        elif op == "-":
            b = rng.randint(1, max(1, min(max_operand, value - min_value)))
            if not word and not allow_negative and value + 1 <= max_operand and rng.random() < 0.2:
                b = rng.randint(value + 1, max_operand)  # b - (expr)
                left = False
        else:
            b = rng.randint(2, max(2, min(max_multiplier, max_result // value)))
            if not word and rng.random() < 0.25:
                left = False
        a_w, b_w = (value, b) if left else (b, value)
        c = _apply(op, a_w, b_w)
        if c > max_result or c < min_value:
            return None
        steps.append(_Step(op, a_w, b_w, c, left if k > 0 else None))
        value = c
    return start, steps, bag_start


def _render_expression(start: int, steps: list[_Step]) -> str:
    expr, top = str(start), None
    for k, st in enumerate(steps):
        sym = _SYM[st.op]
        if k == 0:  # both operands are literals, as written (start may be either of them)
            expr = f"{st.a} {sym} {st.b}"
        elif st.carried_left is False:
            inner = f"({expr})" if top is not None and not (st.op in "+-" and top == "*") else expr
            expr = f"{st.a} {sym} {inner}"
        else:
            inner = f"({expr})" if st.op == "*" and top in ("+", "-") else expr
            expr = f"{inner} {sym} {st.b}"
        top = st.op
    return expr


def _connector(k: int, n: int) -> str:
    if k == 0:
        return "First"
    if k == n - 1:
        return "Finally" if n > 2 else "Then"
    return "Next"


def _expression_problem(rng: random.Random, start: int, steps: list[_Step]) -> tuple[str, list[str]]:
    text = rng.choice(_EXPR_TEMPLATES).format(e=_render_expression(start, steps))
    tmpl = rng.choice(_EXPR_STEP_TEMPLATES)
    paras = [
        tmpl.format(c=_connector(k, len(steps)), v=_VERB[st.op], eq=_eq(st.a, st.op, st.b, st.c))
        for k, st in enumerate(steps)
    ]
    return text, paras


def _word_problem(rng: random.Random, start: int, steps: list[_Step], bag_start: bool) -> tuple[str, list[str]]:
    name, p, o, _poss = rng.choice(_PEOPLE)
    items, container = rng.choice(_ITEMS)
    sentences: list[str] = []
    paras: list[str] = []
    for k, st in enumerate(steps):
        eq = _eq(st.a, st.op, st.b, st.c)
        if k == 0 and bag_start:
            sentences.append(f"{name} gets {st.a} {container} with {st.b} {items} in each.")
            paras.append(f"{name} gets {st.a} {container} of {st.b} {items}, so {p} has {eq} {items}.")
            continue
        if st.op == "*" and st.b in _MUL_WORDS and rng.random() < 0.6:
            verb, ger = _MUL_WORDS[st.b]
            sent = f"the number of {items} {p} has {verb}"
            clause = f"{ger} that, {p} has"
        else:
            sent_t, clause_t = rng.choice(_WORD_OPS[st.op])
            sent = sent_t.format(p=p, o=o, b=st.b, items=items)
            clause = clause_t.format(p=p, b=st.b)
        if k == 0:
            sentences.append(f"{name} has {start} {items}.")
        prefix = "" if k == 0 else "Then "
        sentence = prefix + sent
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        para = f"{clause} {eq} {items}."
        if k == 0:
            para = f"{name} starts with {start} {items}. {para}"
        paras.append(para)
    sentences.append(f"How many {items} does {name if rng.random() < 0.5 else p} have now?")
    return " ".join(sentences), paras


def _numbers_ok(start: int, steps: list[_Step]) -> bool:
    answer = steps[-1].c
    earlier = {start}
    for st in steps:
        earlier.update((st.a, st.b))
    earlier.update(st.c for st in steps[:-1])
    return answer not in earlier


def generate_arithmetic(
    n: int,
    seed: int,
    steps: tuple[int, int] = (2, 3),
    max_operand: int = 20,
    id_prefix: str = "arith",
    *,
    max_result: int = 1000,
    max_multiplier: int | None = None,
    word_fraction: float = 0.5,
    allow_negative: bool = False,
) -> list[Problem]:
    r"""``n`` distinct multi-step arithmetic problems, deterministic by ``seed``.

    ``steps`` is the (min, max) number of operations; operands are at most ``max_operand``
    (multipliers at most ``max_multiplier``, default ``min(max_operand, 10)``); every value is
    at most ``max_result``.
    About ``word_fraction`` of the problems are word problems, the rest expressions.

    Measured difficulty (SmolLM2-135M-Instruct, CPU, 16 problems x 4 samples, T=0.7, 160 new
    tokens, graded on the last ``\boxed{}``): pass@1 = 0 both for the defaults and for
    ``steps=(2, 2), max_operand=5``.  The model almost never puts an integer in ``\boxed{}``
    (0 of 128 samples did).  With the last number in the text taken as its answer, pass@1 was
    0.016 for the defaults and 0.078 for the easy setting.
    """
    lo, hi = steps
    if n < 0:
        raise ValueError("n must be >= 0")
    if not (1 <= lo <= hi):
        raise ValueError(f"steps must satisfy 1 <= min <= max, got {steps}")
    if max_operand < 2:
        raise ValueError("max_operand must be >= 2")
    if max_result < max(2 * max_operand, 4):
        raise ValueError("max_result must be >= 2 * max_operand")
    mul_max = max(2, min(max_operand, 10) if max_multiplier is None else max_multiplier)
    rng = random.Random(seed)
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * (n + 10):
            raise ValueError(
                f"could not generate {n} distinct problems with steps={steps}, "
                f"max_operand={max_operand}, max_result={max_result}"
            )
        n_ops = rng.randint(lo, hi)
        word = rng.random() < word_fraction
        chain = _sample_chain(rng, n_ops, max_operand, mul_max, max_result, allow_negative, word)
        if chain is None:
            continue
        start, chain_steps, bag_start = chain
        if not _numbers_ok(start, chain_steps):
            continue
        if word:
            text, paras = _word_problem(rng, start, chain_steps, bag_start)
        else:
            text, paras = _expression_problem(rng, start, chain_steps)
        if text in seen:
            continue
        seen.add(text)
        answer = chain_steps[-1].c
        paras.append(f"The final answer is \\boxed{{{answer}}}.")
        out.append(
            Problem(
                id=f"{id_prefix}-{seed}-{len(out)}",
                problem=text,
                answer=str(answer),
                reference_solution="\n\n".join(paras),
                source=ARITHMETIC_SOURCE,
            )
        )
    return out

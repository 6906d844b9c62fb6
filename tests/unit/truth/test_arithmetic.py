"""Ground truth of the arithmetic family: false equations, and the first error against the problem's chain."""

from __future__ import annotations

import random

import pytest

from intrain.data.arithmetic import generate_arithmetic
from intrain.data.problem import Problem
from intrain.truth.arithmetic import FirstError, first_error, first_wrong_substep, reference_chain
from intrain.truth.oracle import make_faulty_attempt

EXPR = Problem(
    "e",
    "Compute (12 + 7) * 3 - 43.",
    "14",
    "First, we add: 12 + 7 = 19.\n\nNext, we multiply: 19 * 3 = 57.\n\n"
    "Finally, we subtract: 57 - 43 = 14.\n\nThe final answer is \\boxed{14}.",
    "arithmetic",
)
WORD = Problem(
    "w",
    "Mia gets 2 bags with 8 apples in each. Then the number of apples she has doubles. "
    "Then she gives away 5. How many apples does she have now?",
    "27",
    "Mia gets 2 bags of 8 apples, so she has 2 * 8 = 16 apples.\n\nDoubling that, she has 16 * 2 = 32 apples.\n\n"
    "After giving away 5, she has 32 - 5 = 27 apples.\n\nThe final answer is \\boxed{27}.",
    "arithmetic",
)


def test_first_wrong_substep() -> None:
    assert first_wrong_substep([]) is None
    assert first_wrong_substep(["Let's go.", "12 + 7 = 19", "19 * 3 = 57"]) is None
    assert first_wrong_substep(["Let's go.", "12 + 7 = 19", "19 * 3 = 56", "56 - 1 = 54"]) == 3
    assert first_wrong_substep(["12 + 7 = 20 - 5 = 15"]) == 1
    assert first_wrong_substep(["x + 3 = 5 so x = 2", "2 + 2 = 5"]) == 2
    assert first_wrong_substep(["\\(3 \\times 4 = 13\\)"]) == 1


def test_reference_chain_reads_the_generators_operations() -> None:
    paras, chain = reference_chain(WORD)
    assert [(s.a, s.op, s.b, s.c, s.carried_left) for s in chain] == [
        (2, "*", 8, 16, None),
        (16, "*", 2, 32, True),
        (32, "-", 5, 27, True),
    ]
    assert paras[chain[1].para][chain[1].eq_start : chain[1].eq_end] == "16 * 2 = 32"
    with pytest.raises(ValueError):
        reference_chain(Problem("x", "Prove it.", "5", "Words only.\n\nThe final answer is \\boxed{5}.", "s"))


def _at(location: int | None, kind: str, operations: range = range(0), expected: int | None = None) -> FirstError:
    return FirstError(location, kind, operations, expected)  # type: ignore[arg-type]


# Hand-written traces in the style of SmolLM2-135M-Instruct: an intro, steps, restatements, slips.
TRACES = [
    (
        "correct, intro and restatement",
        WORD,
        "Let's break this down step by step.\n\nMia has 2 bags with 8 apples each, so 2 * 8 = 16 apples.\n\n"
        "Now the number doubles: 16 * 2 = 32. So she has 32 apples (remember 2 * 8 = 16 at the start).\n\n"
        "She gives away 5: 32 - 5 = 27.\n\nThe final answer is \\boxed{27}.",
        _at(None, "none"),
    ),
    (
        "true equation on the wrong operands",
        WORD,
        "To solve this, we need to find out how many apples Mia has.\n\nMia has 2 bags, so 2 * 2 = 4 apples.\n\n"
        "Doubling, 4 * 2 = 8 apples.\n\nShe gives away 5, so 8 - 5 = 3.\n\nThe answer is \\boxed{3}.",
        _at(2, "wrong_operands", range(0, 1), 16),
    ),
    (
        "order swap is still correct; later false equation",
        WORD,
        "Let's solve the problem.\n\nFirst, 8 * 2 = 16 apples.\n\nThen 2 * 16 = 32 apples.\n\n"
        "Finally 32 - 5 = 28 apples.\n\nSo Mia has \\boxed{28} apples.",
        _at(4, "false_equation", range(2, 3), 27),
    ),
    (
        "wrong operator after a restatement",
        WORD,
        "Mia starts with 2 * 8 = 16 apples.\n\nThe number doubles: 16 * 2 = 32.\n\n"
        "She still had 2 * 8 = 16 at first, and now 32.\n\nShe gives away 5, so 32 + 5 = 37.\n\n"
        "The final answer is \\boxed{37}.",
        _at(4, "wrong_operands", range(2, 3), 27),
    ),
    (
        "skipped operation",
        WORD,
        "Mia has 2 * 8 = 16 apples.\n\nShe gives away 5: 16 - 5 = 11.\n\nThe answer is \\boxed{11}.",
        _at(2, "wrong_operands", range(1, 2), 32),
    ),
    (
        "right chain, wrong box",
        WORD,
        "2 * 8 = 16\n\n16 * 2 = 32\n\n32 - 5 = 27\n\nTherefore, the final answer is \\boxed{28}.",
        _at(4, "wrong_answer", range(3, 3), 27),
    ),
    (
        "box before the last operation",
        EXPR,
        "We compute step by step.\n\n12 + 7 = 19\n\n19 * 3 = 57\n\nThe final answer is \\boxed{57}.",
        _at(4, "wrong_answer", range(2, 3), 14),
    ),
    (
        "missing box, consistent so far: nothing to locate",
        EXPR,
        "We compute step by step.\n\n12 + 7 = 19\n\n19 * 3 = 57\n\nThe answer is fifty-seven.",
        _at(None, "none"),
    ),
    (
        "missing box, wrong operand",
        EXPR,
        "Let me solve it.\n\n12 + 7 = 19\n\n19 * 2 = 38\n\n38 - 43 is negative, so the answer is 5.",
        _at(3, "wrong_operands", range(1, 2), 57),
    ),
    (
        "correct box wins over an earlier slip",
        EXPR,
        "12 + 7 = 20\n\nOops, 12 + 7 = 19, 19 * 3 = 57 and 57 - 43 = 14.\n\n\\boxed{14}",
        _at(None, "none"),
    ),
    (
        "two operations at once",
        EXPR,
        "First, (12 + 7) * 3 = 57.\n\nThen 57 - 43 = 14.\n\nThe final answer is \\boxed{14}.",
        _at(None, "none"),
    ),
    (
        "two operations at once, the second one false",
        EXPR,
        "First, 12 + 7 = 19, then 19 * 3 = 56.\n\nThen 56 - 43 = 13.\n\nThe final answer is \\boxed{13}.",
        _at(1, "false_equation", range(0, 2), 57),
    ),
    (
        "helper values used in the same substep are fine",
        EXPR,
        "12 + 7 = 19.\n\n19 * 3 = 10 * 3 + 9 * 3, and 10 * 3 = 30, 9 * 3 = 27, so 30 + 27 = 57.\n\n"
        "57 - 43 = 15.\n\n\\boxed{15}",
        _at(3, "false_equation", range(2, 3), 14),
    ),
    (
        "a helper used only in a later substep is reported (per-substep judging)",
        EXPR,
        "12 + 7 = 19.\n\nSplit 19 * 3: 10 * 3 = 30.\n\n30 + 27 = 57, and 57 - 43 = 14.\n\n\\boxed{15}",
        _at(2, "wrong_operands", range(1, 2), 57),
    ),
    (
        "LaTeX, \\times and \\( \\)",
        EXPR,
        "To compute this, we follow the order of operations.\n\n\\( 12 + 7 = 19 \\)\n\n\\[ 19 \\times 3 = 57 \\]\n\n"
        "\\( 57 - 43 = 14 \\)\n\nThe final answer is $\\boxed{14}$.",
        _at(None, "none"),
    ),
    (
        "LaTeX wrong operand",
        EXPR,
        "\\( 12 + 7 = 19 \\)\n\n\\[ 19 \\times 3 = 57 \\]\n\n\\( 57 - 34 = 23 \\)\n\n"
        "The final answer is $\\boxed{23}$.",
        _at(3, "wrong_operands", range(2, 3), 14),
    ),
    (
        "headings and prose are never errors",
        EXPR,
        "Step 1: Add the numbers in the brackets.\n\n12 + 7 = 19\n\nStep 2: Multiply by 3.\n\n19 * 3 = 57\n\n"
        "Step 3: Subtract 43.\n\n57 - 43 = 41\n\nThe final answer is \\boxed{41}.",
        _at(6, "false_equation", range(2, 3), 14),
    ),
    (
        "a box with a unit word",
        WORD,
        "2 * 8 = 16\n\n16 * 2 = 32\n\n32 - 5 = 27\n\n\\boxed{27 apples}",
        _at(None, "none"),
    ),
    (
        "an operation done in words, the next one on its result",
        WORD,
        "Mia has 2 bags of 8 apples, which is 16 apples.\n\nDoubling gives 16 * 2 = 32.\n\n"
        "She gives away 5: 32 - 5 = 26.\n\n\\boxed{26}",
        _at(3, "false_equation", range(2, 3), 27),
    ),
    (
        "a one-operation slip that lands on a later chain value",
        Problem(
            "c",
            "Compute 10 - 6 - 1.",
            "3",
            "First, we subtract: 10 - 6 = 4.\n\nThen, we subtract: 4 - 1 = 3.\n\nThe final answer is \\boxed{3}.",
            "arithmetic",
        ),
        "10 - 7 = 3\n\n3 - 1 = 2\n\n\\boxed{2}",
        _at(1, "wrong_operands", range(0, 1), 4),
    ),
    (
        "a false equation between bare numbers",
        WORD,
        "Mia has 2 bags.\nLet's simplify the equation:\n16 = 4\n\n4 * 2 = 8\n\n\\boxed{8}",
        _at(1, "false_equation", range(0, 1), 16),
    ),
    (
        "bare numbers are not computations",
        WORD,
        "Mia has 16 = 16 apples after 2 * 8 = 16.\n\n32 = 32 after doubling.\n\n\\boxed{30}",
        _at(3, "wrong_answer", range(1, 2), 32),
    ),
]


@pytest.mark.parametrize("name,problem,completion,expected", TRACES, ids=[t[0] for t in TRACES])
def test_first_error_on_hand_written_traces(name: str, problem: Problem, completion: str, expected: FirstError) -> None:
    assert first_error(problem, completion) == expected


def test_first_error_follows_the_separator() -> None:
    completion = "12 + 7 = 19\n---\n19 * 3 = 57\n---\n57 + 43 = 100\n---\n\\boxed{100}"
    assert first_error(EXPR, completion, separator="\n---\n").location == 3
    assert first_error(EXPR, completion.replace("\n---\n", "\r\n\r\n")).location == 3


GENERATED = (
    generate_arithmetic(150, seed=31)
    + generate_arithmetic(60, seed=32, steps=(3, 3), max_operand=9)
    + generate_arithmetic(40, seed=33, steps=(1, 4))
)


def test_reference_solutions_have_no_error() -> None:
    for p in GENERATED:
        assert first_error(p, p.reference_solution) == FirstError(None, "none")
        paras = p.reference_solution.split("\n\n")
        assert first_error(p, "\n\n".join(paras[:-1])).location is None  # no box, nothing inconsistent
        wrong_box = "\n\n".join([*paras[:-1], f"The final answer is \\boxed{{{int(p.answer) + 1}}}."])
        done = len(paras) - 1  # every operation
        assert first_error(p, wrong_box) == FirstError(len(paras), "wrong_answer", range(done, done), int(p.answer))


def test_faulty_attempts_are_located_exactly() -> None:
    rng = random.Random(7)
    for p in GENERATED:
        attempt, location, _ = make_faulty_attempt(p, rng)
        found = first_error(p, attempt)
        assert (found.location, found.kind) == (location, "false_equation"), attempt
        _, chain = reference_chain(p)
        assert found.expected == chain[found.operations[-1]].c


def test_wrong_operand_attempts_are_located() -> None:
    """Replace one stated operand, carry the new value on consistently: every equation is true."""
    rng = random.Random(3)
    exact = total = 0
    for p in GENERATED:
        paras, chain = reference_chain(p)
        j = rng.randrange(len(chain))
        values, cur = [], None
        for k, st in enumerate(chain):
            a, b = st.a, st.b
            if k == j:
                a, b = (a + 1, b) if st.carried_left is False else (a, b + 1)
            if k > j:
                a, b = (cur, b) if st.carried_left else (a, cur)
            cur = a + b if st.op == "+" else a - b if st.op == "-" else a * b
            values.append((a, b, cur))
        if cur == chain[-1].c:
            continue
        out = list(paras)
        for st, (a, b, c) in zip(chain, values, strict=True):
            out[st.para] = paras[st.para][: st.eq_start] + f"{a} {st.op} {b} = {c}" + paras[st.para][st.eq_end :]
        out[-1] = f"The final answer is \\boxed{{{cur}}}."
        found = first_error(p, "\n\n".join(out))
        total += 1
        exact += (found.location, found.kind) == (chain[j].para + 1, "wrong_operands")
        assert found.location is not None and found.location >= chain[j].para + 1
    assert total > 200 and exact / total > 0.95, (exact, total)

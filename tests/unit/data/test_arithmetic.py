"""The offline arithmetic generator: determinism, validity, reference solutions in the family's format."""

from __future__ import annotations

import re

import pytest

from intrain.data.arithmetic import generate_arithmetic
from intrain.data.problem import validate_problems
from intrain.truth.arithmetic import first_wrong_substep
from intrain.truth.expressions import evaluate_expression, find_equations

BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


def _standalone(number: str, text: str) -> bool:
    return re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text) is not None


# --------------------------------------------------------------------------- generation


def test_deterministic_by_seed() -> None:
    a = generate_arithmetic(40, seed=7)
    b = generate_arithmetic(40, seed=7)
    c = generate_arithmetic(40, seed=8)
    assert a == b
    assert [p.problem for p in a] != [p.problem for p in c]
    assert len({p.problem for p in a} & {p.problem for p in c}) < 5
    assert [p.id for p in a] == [f"arith-7-{i}" for i in range(40)]
    assert generate_arithmetic(3, seed=1, id_prefix="x")[2].id == "x-1-2"
    # a prefix of a longer run is the shorter run
    assert generate_arithmetic(10, seed=7) == a[:10]


def test_generated_problems_are_valid_and_distinct() -> None:
    probs = generate_arithmetic(200, seed=3)
    valid, skipped = validate_problems(probs, on_invalid="error", origin="arith")
    assert len(valid) == 200 and skipped == []
    assert len({p.problem for p in probs}) == 200
    assert all(p.source == "arithmetic" for p in probs)
    kinds = {"word" if "How many" in p.problem else "expr" for p in probs}
    assert kinds == {"word", "expr"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"steps": (2, 2)},
        {"steps": (3, 3), "max_operand": 9},
        {"max_operand": 5, "max_result": 100},
        {"steps": (1, 4)},
    ],
)
def test_reference_solutions_are_consistent(kwargs: dict) -> None:
    probs = generate_arithmetic(150, seed=11, **kwargs)
    lo, hi = kwargs.get("steps", (2, 3))
    max_result = kwargs.get("max_result", 1000)
    for p in probs:
        paras = p.reference_solution.split("\n\n")
        # one equation per computation step, then the boxed line
        assert paras[-1] == f"The final answer is \\boxed{{{p.answer}}}."
        steps = paras[:-1]
        assert lo <= len(steps) <= hi
        for para in steps:
            eqs = find_equations(para)
            assert len(eqs) == 1, para
            eq = eqs[0]
            assert evaluate_expression(eq.lhs) == evaluate_expression(eq.rhs), para
            assert re.fullmatch(r"\d+ [+\-*] \d+", eq.lhs) and re.fullmatch(r"\d+", eq.rhs), para
            assert int(eq.rhs) <= max_result
        assert BOXED.findall(p.reference_solution) == [p.answer]
        assert int(p.answer) >= 0
        # the last equation's result is the answer
        assert find_equations(steps[-1])[0].rhs == p.answer
        assert first_wrong_substep(paras) is None
        # the problem's expression (if any) evaluates to the answer
        m = re.fullmatch(r"(?:Compute|What is|Evaluate|Calculate) (.*)[.?]", p.problem)
        if m:
            assert evaluate_expression(m.group(1)) == int(p.answer), p.problem


def test_answer_never_appears_earlier() -> None:
    for p in generate_arithmetic(300, seed=5):
        before_last = p.reference_solution.split("\n\n")[:-2]
        last_eq = find_equations(p.reference_solution.split("\n\n")[-2])[0]
        assert not any(_standalone(p.answer, s) for s in before_last), p
        assert not _standalone(p.answer, last_eq.lhs)
        assert not _standalone(p.answer, p.problem)


def test_knobs_validated() -> None:
    with pytest.raises(ValueError):
        generate_arithmetic(3, seed=0, steps=(3, 2))
    with pytest.raises(ValueError):
        generate_arithmetic(3, seed=0, max_operand=1)
    assert generate_arithmetic(0, seed=0) == []


def test_allow_negative_knob() -> None:
    probs = generate_arithmetic(300, seed=2, allow_negative=True, max_operand=9, word_fraction=0.0)
    for p in probs:
        assert first_wrong_substep(p.reference_solution.split("\n\n")) is None
    assert all(int(p.answer) >= 0 for p in generate_arithmetic(300, seed=2))

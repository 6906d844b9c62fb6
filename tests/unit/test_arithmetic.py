"""The offline arithmetic family: generation, equation finding, safe evaluation, faulty attempts."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from intrain.data.arithmetic import (
    Equation,
    evaluate_expression,
    find_equations,
    first_wrong_substep,
    generate_arithmetic,
    make_faulty_attempt,
)
from intrain.data.problem import Problem, validate_problems

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
    [{}, {"steps": (2, 2)}, {"steps": (3, 3), "max_operand": 9}, {"max_operand": 5, "max_result": 100}, {"steps": (1, 4)}],
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


# --------------------------------------------------------------------------- faulty attempts


def test_faulty_attempts_location_matches_first_wrong_substep() -> None:
    rng = random.Random(1234)
    probs = generate_arithmetic(120, seed=99) + generate_arithmetic(40, seed=4, steps=(3, 3), max_operand=9)
    cases = 0
    locations_seen = set()
    for p in probs:
        for _ in range(2):
            attempt, loc, intervention = make_faulty_attempt(p, rng)
            substeps = attempt.split("\n\n")
            assert first_wrong_substep(substeps) == loc, (attempt, loc)
            assert 1 <= loc < len(substeps)
            # wrong boxed answer at the end
            boxed = BOXED.findall(substeps[-1])
            assert len(boxed) == 1 and boxed[0] != p.answer
            assert BOXED.findall(attempt) == boxed
            # everything after the wrong step is arithmetically consistent
            assert first_wrong_substep(substeps[loc:]) is None
            # the intervention never contains the final answer
            assert not _standalone(p.answer, intervention), (p.problem, intervention)
            assert "\\boxed" not in intervention
            # the intervention itself is arithmetically correct
            assert first_wrong_substep([intervention]) is None
            assert attempt != p.reference_solution
            locations_seen.add(loc)
            cases += 1
    assert cases >= 200
    assert len(locations_seen) >= 3


def test_faulty_attempt_deterministic_and_varied() -> None:
    p = generate_arithmetic(1, seed=21)[0]
    assert make_faulty_attempt(p, random.Random(5)) == make_faulty_attempt(p, random.Random(5))
    outs = {make_faulty_attempt(p, random.Random(s))[0] for s in range(30)}
    assert len(outs) > 5


def test_final_step_intervention_names_method_only() -> None:
    rng = random.Random(0)
    seen = 0
    for p in generate_arithmetic(100, seed=8):
        attempt, loc, intervention = make_faulty_attempt(p, rng)
        substeps = attempt.split("\n\n")
        if loc == len(substeps) - 1:  # the wrong step is the last computation
            seen += 1
            assert intervention.startswith("Let me recompute")
            assert find_equations(intervention) == []
            assert not _standalone(p.answer, intervention)
    assert seen > 10


def test_earlier_step_intervention_is_corrected_step() -> None:
    p = Problem(
        "t",
        "Compute (12 + 7) * 3 - 43.",
        "14",
        "First, we add: 12 + 7 = 19.\n\nNext, we multiply: 19 * 3 = 57.\n\n"
        "Finally, we subtract: 57 - 43 = 14.\n\nThe final answer is \\boxed{14}.",
        "arithmetic",
    )
    rng = random.Random(3)
    seen_first = False
    for _ in range(40):
        attempt, loc, intervention = make_faulty_attempt(p, rng)
        steps = attempt.split("\n\n")
        if steps[loc - 1].split(":")[0].endswith("add"):
            seen_first = True
            assert "12 + 7 = 19" in intervention
    assert seen_first


def test_make_faulty_attempt_rejects_other_formats() -> None:
    p = Problem("x", "Prove it.", "5", "Some words without equations.\n\nThe final answer is \\boxed{5}.", "s")
    with pytest.raises(ValueError):
        make_faulty_attempt(p, random.Random(0))


# --------------------------------------------------------------------------- equations in text


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(e.lhs, e.rhs) for e in find_equations(text)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("12 + 7 = 19", [("12 + 7", "19")]),
        ("12+7=19", [("12+7", "19")]),
        ("12 × 7 = 84", [("12 × 7", "84")]),
        ("12 \\times 7 = 84", [("12 \\times 7", "84")]),
        ("19 - 5 = 14", [("19 - 5", "14")]),
        ("12 + 7 - 5 = 14", [("12 + 7 - 5", "14")]),
        ("so 12 + 7 = 19 - 5 = 14.", [("12 + 7", "19"), ("19 - 5", "14")]),
        ("12 + 7 = 20 - 5 = 15", [("12 + 7", "20 - 5"), ("20 - 5", "15")]),
        ("we get \\(12 + 7 = 19\\) apples", [("12 + 7", "19")]),
        ("\\[ 3 \\times (4 + 5) = 27 \\]", [("3 \\times (4 + 5)", "27")]),
        ("$12+7=19$", [("12+7", "19")]),
        ("1,200 + 300 = 1,500", [("1,200 + 300", "1,500")]),
        ("(12 + 7 = 19)", [("12 + 7", "19")]),
        ("10 / 4 = 2.5", [("10 / 4", "2.5")]),
        ("a = 3 + 4 = 7", [("3 + 4", "7")]),
        ("P(4)=1+14+36+24=75", [("1+14+36+24", "75")]),
        ("x_6+y_6+z_6=70+99+70=239", [("70+99+70", "239")]),
        ("It happened on 2024-01-15 at 10:30.", []),
        ("2024-01-15 = 2008", []),
        ("x + 3 = 5", []),
        ("x - 3 = 5", []),
        ("x^2 = 4", []),
        ("2x + 3 = 7", []),
        ("12 + 7 = 19 + x", []),
        ("T(3)=4, T(4)=10", []),
        ("f(1,2) = 3", []),
        ("(1, 2) = 3", []),
        ("b^2 mod 9=0", []),
        ("2^3 = 8 = 1 (mod 7)", []),
        ("50% = 0.5", []),
        ("5! = 120", []),
        ("2 x 3 = 6", []),
        ("no numbers here", []),
    ],
)
def test_find_equations(text: str, expected: list[tuple[str, str]]) -> None:
    assert _pairs(text) == expected


def test_equation_spans() -> None:
    text = "First, 12 + 7 = 19. Then 19 × 3 = 57."
    eqs = find_equations(text)
    assert [text[e.start : e.end] for e in eqs] == ["12 + 7 = 19", "19 × 3 = 57"]
    assert eqs[0] == Equation("12 + 7", "19", 7, 18)
    t2 = "so 12 + 7 = 19 - 5 = 14"
    assert [t2[e.start : e.end] for e in find_equations(t2)] == ["12 + 7 = 19", "19 - 5 = 14"]


def test_first_wrong_substep() -> None:
    assert first_wrong_substep([]) is None
    assert first_wrong_substep(["Let's go.", "12 + 7 = 19", "19 * 3 = 57"]) is None
    assert first_wrong_substep(["Let's go.", "12 + 7 = 19", "19 * 3 = 56", "56 - 1 = 54"]) == 3
    assert first_wrong_substep(["12 + 7 = 20 - 5 = 15"]) == 1
    assert first_wrong_substep(["x + 3 = 5 so x = 2", "2 + 2 = 5"]) == 2
    assert first_wrong_substep(["\\(3 \\times 4 = 13\\)"]) == 1


# --------------------------------------------------------------------------- safe evaluation


@pytest.mark.parametrize(
    "expr,value",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 * 3 + 4 * 5", 26),
        ("10 - 4 - 3", 3),
        ("100 / 10 / 5", 2),
        ("2 * (3 + 4) * 5", 70),
        ("((2))", 2),
        ("12 × 7", 84),
        ("84 ÷ 7", 12),
        ("12 \\times 7", 84),
        ("3 \\cdot 4", 12),
        ("3 · 4", 12),
        ("8 \\div 2", 4),
        ("7 − 2", 5),
        ("-3 + 5", 2),
        ("-(2 + 3)", -5),
        ("--4", 4),
        ("2 * -3", -6),
        ("1.5 + 2.25", Fraction(15, 4)),
        ("1,200 + 300", 1500),
        ("1{,}200 - 200", 1000),
        ("[2 + 3] * 2", 10),
        ("\\left(1 + 2\\right) \\times 3", 9),
        ("7 / 2", Fraction(7, 2)),
    ],
)
def test_evaluate_expression(expr: str, value: Fraction | int) -> None:
    assert evaluate_expression(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "1 / 0",
        "5 ÷ (3 - 3)",
        "__import__('os')",
        "__import__('os').system('echo hi')",
        "os.system('ls')",
        "1 + x",
        "2 ** 3",
        "2(3)",
        "(1 + 2",
        "1 + 2)",
        "(1 + 2]",
        "1e5",
        "",
        "   ",
        "+",
        "3 +",
        "1,2",
        "lambda: 1",
        "open('/etc/passwd').read()",
        "(" * 500 + "1" + ")" * 500,
        "1" + "+1" * 5000,
    ],
)
def test_evaluate_expression_rejects(expr: str) -> None:
    assert evaluate_expression(expr) is None


def test_evaluate_expression_non_string() -> None:
    assert evaluate_expression(None) is None  # type: ignore[arg-type]

"""Scripted stand-ins: faulty attempts with a known slip, and oracle interventions at the true first error."""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from intrain.data.arithmetic import generate_arithmetic
from intrain.data.problem import Problem
from intrain.interventions import guided_prefix, leaks_answer, parse_intervention
from intrain.steps import split_substeps
from intrain.truth.arithmetic import first_error, first_wrong_substep, reference_chain
from intrain.truth.expressions import find_equations
from intrain.truth.oracle import make_faulty_attempt, oracle_intervention

BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


def _standalone(number: str, text: str) -> bool:
    return re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text) is not None


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


def test_slip_weights_move_the_slip_to_the_weighted_computation() -> None:
    problems = generate_arithmetic(60, seed=4, steps=(3, 3), max_operand=9)

    def computation_of_slip(weights: list[float] | None, seed: int) -> list[int]:
        rng = random.Random(seed)
        out = []
        for p in problems:
            attempt, loc, _ = make_faulty_attempt(p, rng, weights)
            with_equations = [i for i, s in enumerate(attempt.split("\n\n"), 1) if find_equations(s)]
            out.append(with_equations.index(loc) + 1)
        return out

    assert computation_of_slip(None, 3) == computation_of_slip(None, 3)
    uniform = computation_of_slip(None, 3)
    assert {uniform.count(k) for k in (1, 2, 3)} <= set(range(10, 31))  # about 20 each
    late = computation_of_slip([1, 1, 30], 3)
    assert late.count(3) >= 50  # 30 of 32 expected: 56 of 60
    # The last weight repeats: [1, 30] weighs the second and third computations alike.
    repeated = computation_of_slip([1, 30], 3)
    assert repeated.count(1) <= 5 and min(repeated.count(2), repeated.count(3)) >= 20


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


# --------------------------------------------------------------------------- oracle interventions

EXPR = Problem(
    "e",
    "Compute (12 + 7) * 3 - 43.",
    "14",
    "First, we add: 12 + 7 = 19.\n\nNext, we multiply: 19 * 3 = 57.\n\n"
    "Finally, we subtract: 57 - 43 = 14.\n\nThe final answer is \\boxed{14}.",
    "arithmetic",
)
PROBLEMS = generate_arithmetic(200, seed=41) + generate_arithmetic(100, seed=42, steps=(3, 3), max_operand=9)


def _content(output: str) -> tuple[str, int]:
    payload = json.loads(output.removeprefix("<intervention>").removesuffix("</intervention>"))
    return payload["content"], payload["location"]


def _attempts(problem: Problem, rng: random.Random) -> list[str]:
    """A faulty attempt, a wrong box after a correct chain, and a true equation on a wrong operand."""
    paras, chain = reference_chain(problem)
    wrong_box = "\n\n".join([*paras[:-1], f"So the answer is \\boxed{{{int(problem.answer) + 3}}}."])
    st = chain[0]
    value = st.a + st.b + 1 if st.op == "+" else st.a - st.b - 1 if st.op == "-" else st.a * (st.b + 1)
    wrong_operand = f"Let's solve it.\n\n{st.a} {st.op} {st.b + 1} = {value}\n\nThe final answer is \\boxed{{0}}."
    return [make_faulty_attempt(problem, rng)[0], wrong_box, wrong_operand]


def test_oracle_points_at_the_first_error_and_parses_back() -> None:
    completion = "Let's go.\n\n12 + 7 = 19\n\n19 * 2 = 38\n\n38 - 43 = -5\n\n\\boxed{-5}"
    out = oracle_intervention(EXPR, completion, random.Random(0))
    assert out == '<intervention>{"content": "Next, we multiply: 19 * 3 = 57.", "location": 3}</intervention>'
    last = oracle_intervention(EXPR, "12 + 7 = 19\n\n19 * 3 = 57\n\n57 - 34 = 23\n\n\\boxed{23}", random.Random(0))
    assert _content(last) == ("Finally, we subtract: 57 - 43.", 3)
    late_box = oracle_intervention(EXPR, "12 + 7 = 19\n\n19 * 3 = 57\n\n57 - 43 = 14\n\n\\boxed{41}", random.Random(0))
    assert _content(late_box) == ("So the final answer is the result of 57 - 43.", 4)
    for text in (EXPR.reference_solution, "12 + 7 = 19\n\nI am not sure."):
        assert oracle_intervention(EXPR, text, random.Random(0)) is None


def test_oracle_json_round_trip_with_latex() -> None:
    r"""Backslashes (\(, \text, \neq, \times) survive json.dumps -> parse_intervention unchanged."""
    problem = Problem(
        "latex",
        "Compute $(12 + 7) \\times 3 - 43$.",
        "14",
        "First, we add: \\(12 + 7 = 19\\) \\text{(so the sum \\neq 20)}.\n\n"
        "Next, \\(\\times\\) 3: \\(19 * 3 = 57\\).\n\nFinally, \\(57 - 43 = 14\\).\n\nThe final answer is \\boxed{14}.",
        "arithmetic",
    )
    attempts = [("12 + 7 = 18\n\n18 * 3 = 54\n\n\\boxed{11}", 0), ("12 + 7 = 19\n\n19 * 4 = 76\n\n\\boxed{33}", 1)]
    for completion, step in attempts:
        out = oracle_intervention(problem, completion, random.Random(1))
        parsed = parse_intervention(out, len(split_substeps(completion)))
        paras, chain = reference_chain(problem)
        assert (parsed.status, parsed.location, parsed.content) == ("ok", step + 1, paras[chain[step].para])


def test_oracle_round_trips_and_never_leaks_on_generated_problems() -> None:
    rng = random.Random(11)
    kinds = set()
    for p in PROBLEMS:
        for attempt in _attempts(p, rng):
            found = first_error(p, attempt)
            kinds.add(found.kind)
            for noise in (0.0, 1.0):
                out = oracle_intervention(p, attempt, rng, content_noise=noise)
                n = len(split_substeps(attempt))
                parsed = parse_intervention(out, n)
                content, location = _content(out)
                assert (parsed.status, parsed.location, parsed.content) == ("ok", found.location, content)
                assert not leaks_answer(content, p.answer), (p, attempt, content)
                assert "\\boxed" not in content and "\n" not in content
            # The clean step is correct, and the attempt it fixes has nothing left to locate.
            clean, location = _content(oracle_intervention(p, attempt, rng))
            assert first_wrong_substep([clean]) is None
            assert first_error(p, guided_prefix(attempt, clean, location)).location is None
    assert kinds == {"false_equation", "wrong_answer", "wrong_operands"}


def _within(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p))


def test_oracle_noise_rates() -> None:
    rng = random.Random(5)
    cases = [
        (p, a, *_content(oracle_intervention(p, a, random.Random(0))))
        for p in PROBLEMS[:100]
        for a in _attempts(p, random.Random(p.id))
    ]
    moved = slipped = n = 0
    for _ in range(7):
        for p, attempt, clean, true_location in cases:
            content, location = _content(oracle_intervention(p, attempt, rng, location_noise=0.3, content_noise=0.2))
            assert 1 <= location <= len(split_substeps(attempt))
            moved += location != true_location
            slipped += content != clean
            n += 1
            if content != clean:  # the slip shows: a false equation, or a different computation to do
                assert first_wrong_substep([content]) == 1 or find_equations(content) == []
    assert n == 2100
    assert _within(moved, n, 0.3), moved
    assert _within(slipped, n, 0.2), slipped


def test_oracle_location_noise_is_uniform_over_other_substeps() -> None:
    rng = random.Random(9)
    completion = "Let's go.\n\n12 + 7 = 19\n\n19 * 2 = 38\n\n38 - 43 = -5\n\n\\boxed{-5}"
    counts = {i: 0 for i in range(1, 6)}
    for _ in range(1000):
        counts[_content(oracle_intervention(EXPR, completion, rng, location_noise=1.0))[1]] += 1
    assert counts[3] == 0
    assert all(_within(counts[i], 1000, 0.25) for i in (1, 2, 4, 5)), counts


def test_oracle_is_deterministic_with_a_seed() -> None:
    cases = [(p, a) for p in PROBLEMS[:40] for a in _attempts(p, random.Random(p.id))]

    def run(seed: int) -> list[str | None]:
        rng = random.Random(seed)
        return [oracle_intervention(p, a, rng, location_noise=0.5, content_noise=0.5) for p, a in cases]

    assert run(3) == run(3)
    assert run(3) != run(4)

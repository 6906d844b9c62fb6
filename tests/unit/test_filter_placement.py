"""`kept_by_placement`: filtered interventions sorted by where they sit against the true first error."""

import dataclasses

from intrain.data.arithmetic import generate_arithmetic
from intrain.lab.filter_precision import kept_by_placement
from intrain.records import FilterResult

PROBLEM = generate_arithmetic(1, seed=3, steps=(2, 2), max_operand=10, max_result=50)[0]  # 5 * 9, then - 7
WRONG_AT_2 = "Ravi has 5 * 9 = 45 stickers.\n\nThen 45 - 6 = 39.\n\nSo \\boxed{39}."
CORRECT = "Ravi has 5 * 9 = 45 stickers.\n\nThen 45 - 7 = 38.\n\nSo \\boxed{38}."


def result(attempt: str, location: int | None, kept: bool) -> FilterResult:
    values = {f.name: None for f in dataclasses.fields(FilterResult)}
    values.update(
        problem_id=PROBLEM.id,
        attempt_id=f"{PROBLEM.id}#0",
        proposal_index=0,
        source=PROBLEM.source,
        problem=PROBLEM.problem,
        answer=PROBLEM.answer,
        reference_solution=PROBLEM.reference_solution,
        attempt=attempt,
        status="ok",
        location=location,
        kept=kept,
    )
    return FilterResult(**values)


def test_each_intervention_counts_where_it_sits_and_whether_it_was_kept():
    assert "5 * 9 = 45" in PROBLEM.reference_solution and PROBLEM.answer == "38"
    results = [
        result(WRONG_AT_2, 1, kept=True),  # a correct step replaced
        result(WRONG_AT_2, 2, kept=True),
        result(WRONG_AT_2, 2, kept=False),
        result(WRONG_AT_2, 3, kept=False),  # the prefix keeps the wrong 45 - 6
        result(WRONG_AT_2, 3, kept=True),
        result(CORRECT, 1, kept=True),  # no true first error: not counted
        result(WRONG_AT_2, None, kept=False),  # no location: not counted
    ]
    assert kept_by_placement(results, "\n\n") == {
        "at": {"candidates": 2, "kept": 1},
        "earlier": {"candidates": 1, "kept": 1},
        "later": {"candidates": 2, "kept": 1},
    }

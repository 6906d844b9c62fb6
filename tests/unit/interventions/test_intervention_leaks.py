"""Unit tests for intrain.interventions.leaks: the gold-answer leak filter (§3.5)."""

from __future__ import annotations

import pytest

from intrain.interventions import leak_normal_form, leaks_answer

LEAK_CASES = [
    ("plain_number", "So the answer should be 42.", "42", True),
    ("boxed_number", r"We get $\boxed{42}$.", "42", True),
    ("gold_boxed", "the value is 42", r"\boxed{42}", True),
    ("case_insensitive", "The answer is B.", "b", True),
    ("spaces_in_expr", r"it equals $2 \sqrt{3}$", r"2\sqrt{3}", True),
    ("frac_vs_slash", r"so $p = \frac{1}{2}$", "1/2", True),
    ("dfrac_vs_frac", r"so $p = \dfrac{1}{2}$", r"\frac{1}{2}", True),
    ("slash_vs_frac", "so p = 1/2 here", r"\frac12", True),
    ("compound_frac", r"get \frac{a+b}{2}", "(a+b)/2", True),
    ("negative_frac", r"value \frac{-3}{4}", "-3/4", True),
    ("left_right", r"point \left( 1, 2 \right)", "(1,2)", True),
    ("text_unit", r"length $5\text{ cm}$", r"5 \text{ cm}", True),
    ("thousands_sep", "there are 1,000 ways", "1000", True),
    ("negative_number", "so x = -4", "-4", True),
    ("sign_conservative", "so x = -4", "4", True),
    ("number_end_sentence", "x = 4.", "4", True),
    ("number_in_list", "values 1,4,9", "4", True),
    ("number_before_letter", "so 4x = y", "4", True),
    ("no_leak", "Reconsider whether the bound is tight.", "42", False),
    ("boundary_14", "there are 14 cases", "4", False),
    ("boundary_41", "we found 41 cases", "4", False),
    ("boundary_decimal_after", "ratio 4.5 here", "4", False),
    ("boundary_decimal_before", "ratio 0.4 here", "4", False),
    ("boundary_subscript", "consider x_4 and x_5", "4", False),
    ("boundary_exponent", "compute 2^4 first", "4", False),
    ("boundary_fraction", "take 4/5 of it", "4", False),
    ("boundary_frac_latex", r"take \frac{3}{4} of it", "4", False),
    ("fraction_gold_not_in_bigger", "take 13/4 of it", "3/4", False),
    ("digits_split_by_space", "values 2 4", "24", False),
    ("word_gold_inside_word", "the answer is obvious", "b", False),
    ("decimal_gold", "it is 2.5 exactly", "2.5", True),
    ("decimal_gold_boundary", "it is 12.55", "2.5", False),
    ("empty_gold", "anything", "", False),
    ("percent", r"about 25\% of them", "25%", True),
    ("degrees", r"angle of 30^\circ", "30", True),
]


@pytest.mark.parametrize("content,gold,expected", [c[1:] for c in LEAK_CASES], ids=[c[0] for c in LEAK_CASES])
def test_leaks_answer(content, gold, expected):
    assert leaks_answer(content, gold) is expected


def test_normalize_answer_examples():
    assert leak_normal_form(r"$\boxed{\dfrac{1}{2}}$") == "1/2"
    assert leak_normal_form(r"\frac{a+b}{2}") == "(a+b)/2"
    assert leak_normal_form("  X  Y ") == "x y"


# Where the two modes part: `normalised` (ours) vs `substring` (the authors' `answer in content`).
MODE_CASES = [
    # id, content, gold, normalised, substring
    ("digit_inside_number", "there are 10 cases", "1", False, True),
    ("digit_in_subscript", "consider x_1 first", "1", False, True),
    ("digit_in_exponent", "compute 2^4 first", "4", False, True),
    ("frac_vs_slash", r"so $p = \frac{1}{2}$", "1/2", True, False),
    ("dfrac_gold", "so p = 1/2 here", r"\dfrac{1}{2}", True, False),
    ("thousands_separator", "there are 1,000 ways", "1000", True, False),
    ("case", "The answer is B.", "b", True, False),
    ("spacing", r"it equals $2 \sqrt{3}$", r"2\sqrt{3}", True, False),
    ("both_plain", "So the answer should be 42.", "42", True, True),
    ("both_boxed", r"We get $\boxed{42}$.", "42", True, True),
    ("neither", "Reconsider whether the bound is tight.", "42", False, False),
    ("empty_gold", "anything", "", False, False),
]


@pytest.mark.parametrize(
    "content,gold,normalised,substring", [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES]
)
def test_leak_modes_differ_where_documented(content, gold, normalised, substring):
    assert leaks_answer(content, gold) is normalised  # the default mode
    assert leaks_answer(content, gold, mode="normalised") is normalised
    assert leaks_answer(content, gold, mode="substring") is substring


def test_unknown_leak_mode_fails():
    with pytest.raises(ValueError, match="leak mode"):
        leaks_answer("x", "1", mode="fuzzy")


def test_propose_marks_leaks_with_the_configured_mode():
    from intrain.config import ProposeConfig
    from intrain.records import Rollout
    from intrain.stages.propose import to_proposal
    from intrain.steps import split_substeps

    attempt = Rollout(
        problem_id="p",
        source="s",
        problem="How many?",
        answer="1",
        reference_solution="ref",
        sample_index=0,
        completion="Step one.\n\nStep two.",
        completion_tokens=5,
        prompt_tokens=3,
        finish_reason="stop",
        correct=False,
        reason="wrong",
        extracted="2",
    )
    steps = split_substeps(attempt.completion, "\n\n")
    output = '<intervention>\n{"content": "Split the 10 cases by parity.", "location": 2}\n</intervention>'

    def status(mode: str) -> str:
        return to_proposal(
            attempt, 0, output, "stop", steps, len(steps), False, None, ProposeConfig(leak_mode=mode)
        ).status

    assert status("normalised") == "ok" and status("substring") == "leak"

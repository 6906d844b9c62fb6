"""Eval summaries: overall and per source, from typed rollouts."""

import pytest

from intrain.records import Rollout
from intrain.stages.evaluate import markdown_table, summarize


def rollout(
    problem_id: str, source: str, index: int, correct: bool, reason: str = "", finish: str = "stop", tokens: int = 10
) -> Rollout:
    return Rollout(
        problem_id=problem_id,
        source=source,
        problem="p",
        answer="1",
        reference_solution="",
        sample_index=index,
        completion="",
        completion_tokens=tokens,
        prompt_tokens=3,
        finish_reason=finish,
        correct=correct,
        reason=reason or ("correct" if correct else "wrong"),
        extracted=None,
    )


def test_per_source_blocks_are_computed_on_their_own_problems():
    rollouts = [
        # source a: p1 2/4 correct, p2 0/4 (one truncated, one without an answer)
        *[rollout("p1", "a", i, i < 2) for i in range(4)],
        rollout("p2", "a", 0, False, finish="length", tokens=30),
        rollout("p2", "a", 1, False, reason="no_answer"),
        rollout("p2", "a", 2, False),
        rollout("p2", "a", 3, False),
        # source b: p3 4/4 correct
        *[rollout("p3", "b", i, True) for i in range(4)],
    ]
    summary = summarize(rollouts, ks=[1, 4])
    a, b, overall = summary["by_source"]["a"], summary["by_source"]["b"], summary["overall"]
    assert a["problems"] == 2 and a["samples"] == 8
    assert a["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert a["pass@4"] == pytest.approx((1.0 + 0.0) / 2)
    assert a["no_answer_rate"] == pytest.approx(1 / 8) and a["truncation_rate"] == pytest.approx(1 / 8)
    assert a["mean_completion_tokens"] == pytest.approx((7 * 10 + 30) / 8)
    assert b["pass@1"] == 1.0 and b["problems"] == 1
    assert overall["pass@1"] == pytest.approx((0.5 + 0.0 + 1.0) / 3) and overall["problems"] == 3
    table = markdown_table({"base": summary}, [1, 4])
    assert "| base | a | 2 | 0.250 | 0.250 | 0.500 |" in table and "| base | b | 1 |" in table


def test_pass_at_k_beyond_the_smallest_group_is_left_out():
    rollouts = [rollout("p1", "a", i, True) for i in range(4)] + [rollout("p2", "a", 0, False)]
    block = summarize(rollouts, ks=[1, 4])["overall"]
    assert "pass@4" not in block and block["pass@1"] == pytest.approx(0.5)


def test_no_rollouts():
    assert summarize([], ks=[1]) == {"overall": {}, "by_source": {}}

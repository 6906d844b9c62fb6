"""CorrectnessReward: TRL's reward-function protocol on top of a real Grader."""

from __future__ import annotations

import pytest

from intrain.grading import Grader
from intrain.rewards import CorrectnessReward, completion_text


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=1, timeout_s=10.0) as g:
        yield g


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_name_is_what_trl_reads():
    from trl.trainer.utils import get_callable_name, is_async_callable

    reward = CorrectnessReward(Grader(workers=1))
    assert get_callable_name(reward) == "correctness"
    assert not is_async_callable(reward)


def test_conversational_completions(grader):
    reward = CorrectnessReward(grader)
    completions = [
        conv("so 3 + 4 = 7, \\boxed{7}"),
        conv("I think \\boxed{8}"),
        conv("no idea"),
        conv("\\boxed{\\frac{14}{2}}"),
    ]
    metrics, extra = {}, {}
    out = reward(
        prompts=[[{"role": "user", "content": "3+4?"}]] * 4,
        completions=completions,
        completion_ids=[[1]] * 4,
        answer=["7"] * 4,
        problem_id=["p"] * 4,
        trainer_state=None,
        log_metric=lambda name, value: metrics.setdefault(name, value),
        log_extra=lambda column, values: extra.setdefault(column, values),
    )
    assert out == [1.0, 0.0, 0.0, 1.0]
    assert all(isinstance(r, float) for r in out)
    assert metrics["correctness/no_answer_ratio"] == 0.25
    assert metrics["correctness/ungradable_ratio"] == 0.0
    assert extra["verdict"] == ["correct", "wrong", "no_answer", "correct"]
    assert reward.take_last_batch() == {"problem_ids": ["p"] * 4, "rewards": out}
    assert reward.take_last_batch() is None  # taken once


def test_string_completions_and_per_row_golds(grader):
    reward = CorrectnessReward(grader)
    out = reward(prompts=["a", "b", "c"], completions=["\\boxed{3}", "\\boxed{3}", ""], answer=["3", 4, "5"])
    assert out == [1.0, 0.0, 0.0]  # golds may arrive as numbers


def test_completion_text_forms():
    assert completion_text("plain") == "plain"
    assert completion_text(conv("msg")) == "msg"
    assert (
        completion_text(
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        )
        == "ab"
    )
    with pytest.raises(TypeError):
        completion_text(42)

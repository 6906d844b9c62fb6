"""Reward functions for TRL's GRPOTrainer.

TRL calls a reward function with keyword arguments: `prompts`, `completions`, `completion_ids`,
`trainer_state`, `log_extra`, `log_metric` and every dataset column except `prompt` (so `answer`,
`problem_id`, ...), each a list with one entry per completion. It may call it from a worker thread,
where math-verify's signal-based timeouts do not work; grading therefore goes through our
`Grader`, whose worker processes enforce one wall-clock deadline per item.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from intrain.grading import Grader, Verdict

__all__ = ["CorrectnessReward", "completion_text"]


def completion_text(completion: Any) -> str:
    """The generated text of one TRL completion: conversational ones are a list of message dicts
    (a single assistant message), standard ones are plain strings."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[0], dict):
        content = completion[0].get("content", "")
        if isinstance(content, list):  # content blocks: keep the text parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else str(content)
    raise TypeError(f"unsupported completion type: {type(completion).__name__}")


class CorrectnessReward:
    """Binary outcome reward (paper: 1 when math-verify says correct, else 0, finished or not).

    Each completion is graded against its row's `answer` column. Per call it logs, through TRL's
    `log_metric`, the share of completions with no final boxed answer and the share that timed out
    or could not be parsed; through `log_extra`, each completion's verdict for TRL's completions
    table. The most recent batch (problem ids and rewards, in TRL's order: each prompt's group of
    completions is contiguous) stays readable through `take_last_batch` for the stage's own log.
    """

    __name__ = "correctness"  # TRL names the metric `rewards/correctness/mean` after it

    def __init__(self, grader: Grader) -> None:
        self.grader = grader
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None

    def __call__(
        self,
        completions: list[Any],
        answer: list[Any],
        problem_id: list[Any] | None = None,
        log_metric=None,
        log_extra=None,
        **_: Any,
    ) -> list[float]:
        texts = [completion_text(c) for c in completions]
        golds = [str(a) for a in answer]
        verdicts = self.grader.grade(texts, golds)
        rewards = [1.0 if v.correct else 0.0 for v in verdicts]
        self._report(verdicts, log_metric, log_extra)
        with self._lock:
            self._last = {"problem_ids": list(problem_id) if problem_id is not None else None, "rewards": rewards}
        return rewards

    def take_last_batch(self) -> dict[str, Any] | None:
        """The last graded batch ({problem_ids, rewards}), once; None if nothing new was graded."""
        with self._lock:
            last, self._last = self._last, None
        return last

    @staticmethod
    def _report(verdicts: list[Verdict], log_metric, log_extra) -> None:
        if not verdicts:
            return
        reasons = Counter(v.reason for v in verdicts)
        n = len(verdicts)
        if log_metric is not None:
            log_metric("correctness/no_answer_ratio", reasons["no_answer"] / n)
            log_metric("correctness/ungradable_ratio", (reasons["timeout"] + reasons["parse_error"]) / n)
        if log_extra is not None:
            log_extra("verdict", [v.reason for v in verdicts])

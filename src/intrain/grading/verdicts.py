"""What grading says about a completion: the Verdict and the reasons it can give.

A module of its own because both sides speak it: workers reply with a reason and the parent turns
reasons into Verdicts, so neither has to import the other for the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

CORRECT = "correct"
WRONG = "wrong"
NO_ANSWER = "no_answer"
TIMEOUT = "timeout"
PARSE_ERROR = "parse_error"


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # one of: "correct", "wrong", "no_answer", "timeout", "parse_error"
    extracted: str | None  # the extracted boxed answer, if any

"""Integration fixtures: a scripted proposer/continuer around the real tiny-model engine."""

import pytest

from intrain.data.arithmetic import generate_arithmetic
from intrain.engines.base import Completion

# The integration configs train on these problems (arithmetic, size 4, seed 11).
TRAIN = generate_arithmetic(4, seed=11)
ANSWERS = {p.problem: p.answer for p in TRAIN}


class ScriptedProposerAndContinuer:
    """Delegates plain sampling to the real engine; scripts proposer replies and continuations."""

    # What every proposer request gets back (subclasses script other interventions).
    proposal = (
        'Checking each substep.\n<intervention>\n{"content": "Wait, let me redo this step carefully.\\n'
        'First compute the first operation.", "location": 1}\n</intervention>'
    )

    def __init__(self, inner):
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.calls = 0

    def generate(self, requests, sampling, on_progress=None):
        scripted = [r for r in requests if r.continue_final or "Student Attempt" in r.messages[-1]["content"]]
        if not scripted:
            return self.inner.generate(requests, sampling, on_progress)
        out = []
        for r in requests:
            if r.continue_final:
                problem = next(p for p in ANSWERS if p in r.messages[0]["content"])
                # Every other problem's interventions lead to a correct answer.
                good = sorted(ANSWERS).index(problem) % 2 == 0
                text = f"so the result is \\boxed{{{ANSWERS[problem] if good else '-1'}}}"
            else:
                text = self.proposal
            out.append(
                [
                    Completion(text=text, token_ids=[1, 2], finish_reason="stop", logprobs=None, prompt_tokens=3)
                    for _ in range(r.n)
                ]
            )
            self.calls += 1
        return out


@pytest.fixture()
def scripted(monkeypatch):
    from intrain.stages import common

    real = common.build_generator
    monkeypatch.setattr(common, "build_generator", lambda *a, **k: ScriptedProposerAndContinuer(real(*a, **k)))

"""Per-request seeds (`Request.seed`): sample j of a request seeded s is drawn as a one-sample request
seeded s + j (vLLM's rule), so the filter's waves draw the continuations that all n at once would."""

from __future__ import annotations

import pytest

from intrain.config import FilterConfig
from intrain.engines import Request, SamplingParams
from intrain.grading import Verdict
from intrain.stages.filter import Continuation, continue_prefixes

SAMPLED = SamplingParams(temperature=1.0, max_tokens=8, seed=0)


def chat(text: str, n: int, seed: int | None = None) -> Request:
    return Request(messages=[{"role": "user", "content": text}], n=n, seed=seed)


def test_a_request_seeded_s_plus_k_returns_samples_k_on_of_one_seeded_s(tiny_generator):
    (six,) = tiny_generator.generate([chat("Count to five.", n=6, seed=100)], SAMPLED)
    assert len({tuple(c.token_ids) for c in six}) > 1
    (last_two,) = tiny_generator.generate([chat("Count to five.", n=2, seed=104)], SAMPLED)
    assert [c.token_ids for c in last_two] == [c.token_ids for c in six[4:]]
    # Its own seed wins over the call's seed and its position among other requests.
    other_call = SamplingParams(temperature=1.0, max_tokens=8, seed=9)
    _, moved = tiny_generator.generate([chat("Name a fruit.", n=3), chat("Count to five.", n=2, seed=104)], other_call)
    assert [c.token_ids for c in moved] == [c.token_ids for c in last_two]


class LengthGrader:
    """Correct when the completion's length is a multiple of 3: a verdict that depends on the sample."""

    def grade(self, texts, golds):
        return [Verdict(len(t) % 3 == 0, "correct" if len(t) % 3 == 0 else "wrong", None) for t in texts]


def test_waves_with_early_stop_draw_what_fixed_n_draws(tiny_generator):
    items = [Continuation(f"What is {i} + {i}?", "0", f"First, {i}") for i in range(8)]
    waves = continue_prefixes(
        tiny_generator, LengthGrader(), items, FilterConfig(n=6, wave_size=2, max_tokens=8), "{problem}", 3, True
    )
    fixed = continue_prefixes(
        tiny_generator, LengthGrader(), items, FilterConfig(n=6, wave_size=6, max_tokens=8), "{problem}", 3, False
    )
    assert [f.sampled for f in fixed] == [6] * 8
    assert sum(w.sampled for w in waves) < 48  # early stopping drew fewer
    for w, f in zip(waves, fixed):
        assert w.verdicts == f.verdicts[: w.sampled]
        assert (w.correct >= 1) == (f.correct >= 1)  # min_correct 1: the same rows kept


def test_a_negative_seed_is_refused():
    with pytest.raises(ValueError, match=r"Request\.seed must be >= 0"):
        chat("hi", n=1, seed=-1)

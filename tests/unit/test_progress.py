"""Progress of generation stages (the filter's tokens/s and rows decided; no bar when output is not a
terminal) and the library chatter our trainer calls silence (narrowly)."""

from __future__ import annotations

import warnings

import datasets
import pytest

from intrain import progress
from intrain.config import FilterConfig
from intrain.engines.base import Completion
from intrain.grading import Verdict
from intrain.stages.filter import Continuation, continue_prefixes


class CountingGenerator:
    """Every continuation is 3 tokens, correct for problem 'good'; reports each call like an engine."""

    def __init__(self):
        self.tokens = 0

    def generate(self, requests, sampling, on_progress=None):
        out = []
        for r in requests:
            text = "\\boxed{1}" if "good" in r.messages[0]["content"] else "\\boxed{2}"
            out.append([Completion(text, [7, 7, 7], "stop", None, 1) for _ in range(r.n)])
        done = sum(r.n for r in requests)
        self.tokens += 3 * done
        if on_progress is not None:
            on_progress(done, 3 * done)
        return out


class ExactGrader:
    def grade(self, texts, golds):
        verdicts = [t == f"\\boxed{{{g}}}" for t, g in zip(texts, golds)]
        return [Verdict(ok, "correct" if ok else "wrong", None) for ok in verdicts]


@pytest.mark.parametrize("early_stop", [True, False])
def test_the_filter_reports_generated_tokens_and_rows_decided(early_stop):
    items = [Continuation(problem, "1", "prefix") for problem in ("good", "bad", "good again")]
    reports: list[tuple[int, int]] = []
    generator = CountingGenerator()
    fcfg = FilterConfig(n=6, wave_size=2, min_correct=2)
    counts = continue_prefixes(
        generator, ExactGrader(), items, fcfg, "{problem}", 0, early_stop, lambda s, t: reports.append((s, t))
    )
    assert sum(t for _, t in reports) == generator.tokens > 0  # every generated token, none counted twice
    assert sum(s for s, _ in reports) == len(items)  # each row once, as it is decided
    assert [c.sampled for c in counts] == ([2, 6, 2] if early_stop else [6, 6, 6])


def test_no_bar_unless_both_streams_are_terminals(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    with progress.StageProgress("sample", total=4) as bar:
        bar.advance(2, 30)
        assert bar._progress.disable
    assert bar.tokens == 30  # stages still record the tokens they generated
    monkeypatch.setattr(progress, "interactive", lambda: True)
    assert not progress.StageProgress("sample", total=4)._progress.disable


def test_training_calls_silence_only_the_named_chatter():
    datasets.enable_progress_bars()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress.quiet_training_libraries():
            assert datasets.are_progress_bars_disabled()
            warnings.warn("`is_gradient_checkpointing` is deprecated and removed in v6.", FutureWarning, stacklevel=1)
            warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
            warnings.warn("`is_gradient_checkpointing` is deprecated", UserWarning, stacklevel=1)  # shown: another kind
    assert [str(w.message) for w in caught] == [
        "something else is deprecated",
        "`is_gradient_checkpointing` is deprecated",
    ]
    assert not datasets.are_progress_bars_disabled()  # restored afterwards

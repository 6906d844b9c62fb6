"""`intrain lab table1` on crafted failed attempts with known first errors and a scripted continuer."""

import json
import random

import pytest
from tiny_configs import write_config

from intrain.cli import main
from intrain.config import load_config
from intrain.data import DataError
from intrain.data.arithmetic import generate_arithmetic
from intrain.engines.base import Completion
from intrain.fingerprints import SAMPLE, fingerprint
from intrain.records import ContinuationTrial, FilterTrial, Proposal, Rollout
from intrain.stages import propose
from intrain.stages.common import RunContext
from intrain.steps import split_substeps
from intrain.store import Stage, read_stage_records
from intrain.truth.oracle import make_faulty_attempt


def crafted_sample_stage(run_dir, config_path, count=6, source="arithmetic"):
    """A finished sample stage of failed attempts, each with one known slip, as if `config_path` made it."""
    rng = random.Random(0)
    rollouts, errors = [], {}
    for _i, problem in enumerate(generate_arithmetic(count, seed=5)):
        attempt, location, _ = make_faulty_attempt(problem, rng)
        rollouts.append(
            Rollout(
                problem_id=problem.id,
                source=source,
                problem=problem.problem,
                answer=problem.answer,
                reference_solution=problem.reference_solution,
                sample_index=0,
                completion=attempt,
                completion_tokens=20,
                prompt_tokens=10,
                finish_reason="stop",
                correct=False,
                reason="wrong",
                extracted=None,
            )
        )
        errors[problem.problem] = split_substeps(attempt)[location - 1].text
    stage = Stage(run_dir, "sample", fingerprint(SAMPLE, load_config(config_path), run_dir))
    stage.write_records(0, rollouts, Rollout)
    stage.finish({"problems": count, "rollouts": count, "correct": 0, "failed": count, "truncated": 0})
    return rollouts, errors


class Continuer:
    """Continues correctly exactly when the open turn is non-empty and free of the attempt's slip."""

    def __init__(self, errors, answers):
        self.errors, self.answers = errors, answers

    def generate(self, requests, sampling, on_progress=None):
        out = []
        for r in requests:
            problem = next(p for p in self.errors if p in r.messages[0]["content"])
            prefix = r.messages[-1]["content"]
            good = bool(prefix) and self.errors[problem] not in prefix
            text = f"\\boxed{{{self.answers[problem] if good else -1}}}"
            out.append(
                [
                    Completion(text=text, token_ids=[1], finish_reason="stop", logprobs=None, prompt_tokens=1)
                    for _ in range(r.n)
                ]
            )
        return out


def test_table1_conditions_match_what_the_continuer_does(tmp_path, tiny_model_dir, monkeypatch):
    path = write_config(
        tmp_path,
        tiny_model_dir,
        propose={"n": 2, "proposer": {"kind": "oracle"}},
        lab={"attempts": 5, "n": 4},
        filter={"max_tokens": 8},
    )
    rollouts, errors = crafted_sample_stage(tmp_path / "run", path)
    answers = {r.problem: r.answer for r in rollouts}
    from intrain.stages import common

    monkeypatch.setattr(common, "build_generator", lambda *a, **k: Continuer(errors, answers))
    assert main(["lab", "table1", path]) == 0
    stage_dir = tmp_path / "run" / "lab-table1"
    summary = json.loads((stage_dir / "table1.json").read_text())["conditions"]
    trials = read_stage_records(tmp_path / "run", "lab-table1", ContinuationTrial)
    assert {t.attempt_id for t in trials} == {r.attempt_id for r in rollouts[:5]}
    assert all(t.sampled == 4 for t in trials)

    def accuracy(condition):
        return summary[condition]["accuracy"]

    assert accuracy("problem_only") == 0 and accuracy("prefix_original") == 0
    assert accuracy("prefix_oracle") == 1 and accuracy("prefix_self") == 1  # the proposer is the oracle here
    later = [t for t in trials if t.condition == "prefix_only" and (t.location or 0) > 1]
    assert accuracy("prefix_only") == pytest.approx(len(later) / 5)
    assert summary["prefix_oracle"]["vs_original"][0] == pytest.approx(1.0)
    lo, hi = summary["prefix_oracle"]["coverage_ci"]
    assert lo < 1.0 == hi  # Wilson at 5/5
    assert (stage_dir / "table1.md").read_text().startswith("| condition |")
    assert (stage_dir / "table1.png").stat().st_size > 0


def test_oracle_proposer_writes_the_true_first_error_and_refuses_other_families(tmp_path, tiny_model_dir):
    path = write_config(tmp_path, tiny_model_dir, propose={"n": 1, "proposer": {"kind": "oracle"}})
    crafted_sample_stage(tmp_path / "run", path)
    ctx = RunContext(config=load_config(path), run_dir=tmp_path / "run")
    proposals = propose.run(ctx).records(Proposal)
    assert proposals and all(p.status == "ok" for p in proposals)
    other = tmp_path / "other"
    crafted_sample_stage(other, path, source="gsm8k")
    with pytest.raises(DataError, match=r"only the arithmetic family has ground truth.*gsm8k"):
        propose.run(RunContext(config=load_config(path), run_dir=other))


def test_filter_precision_grid_matches_the_recorded_verdicts(tmp_path, tiny_model_dir, monkeypatch):
    path = write_config(
        tmp_path,
        tiny_model_dir,
        propose={"n": 1, "proposer": {"kind": "oracle"}},
        lab={"attempts": 6, "precision_n": 8, "precision_noise": 0.5},
        filter={"max_tokens": 8},
    )
    rollouts, errors = crafted_sample_stage(tmp_path / "run", path)
    from intrain.stages import common

    monkeypatch.setattr(
        common, "build_generator", lambda *a, **k: Continuer(errors, {r.problem: r.answer for r in rollouts})
    )
    assert main(["lab", "filter-precision", path]) == 0
    trials = read_stage_records(tmp_path / "run", "lab-filter-precision", FilterTrial)
    assert sorted(t.proposer for t in trials) == ["oracle"] * 6 + ["self"] * 6
    assert all(len(t.verdicts) == 8 for t in trials)
    assert all(t.error_free for t in trials if t.proposer == "self")  # the propose stage's noiseless oracle
    summary = json.loads((tmp_path / "run" / "lab-filter-precision" / "filter_precision.json").read_text())
    for proposer, block in summary["proposers"].items():
        rows = [t for t in trials if t.proposer == proposer]
        assert [(g["n"], g["min_correct"]) for g in block["grid"]] == [(8, 1), (8, 2), (8, 4)]
        for g in block["grid"]:
            kept = [t for t in rows if sum(t.verdicts[: g["n"]]) >= g["min_correct"]]
            assert g["kept"] == len(kept)
            if kept:
                assert g["precision"] == pytest.approx(sum(t.error_free for t in kept) / len(kept))
            good = [t for t in rows if t.error_free]
            if good:
                assert g["recall"] == pytest.approx(sum(t.error_free for t in kept) / len(good))
    # The continuer succeeds exactly when the prefix avoids the slip, so noisy oracle rows that keep the
    # slip are both wrong by the ground truth and rejected by the filter.
    assert any(not t.error_free for t in trials if t.proposer == "oracle")

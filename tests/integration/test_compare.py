"""`intrain compare` end to end on the tiny model: every arm, two RL seeds, one table."""

import json
import statistics

import pytest
from tiny_configs import write_config

from intrain import compare
from intrain.cli import main
from intrain.config import load_config
from intrain.records import Rollout
from intrain.stages.common import RunContext
from intrain.store import read_stage_records


def test_compare_all_arms(tmp_path, tiny_model_dir, scripted, capsys):
    path = write_config(
        tmp_path,
        tiny_model_dir,
        sample={"n": 2, "max_tokens": 8, "shard_size": 4},
        propose={"n": 1, "template": "compact", "max_prompt_tokens": 4096, "max_tokens": 8},
        filter={"n": 2, "wave_size": 2},
        sft={
            "learning_rate": 1e-3,
            "epochs": 1,
            "effective_batch_size": 2,
            "per_device_batch_size": 2,
            "max_length": 1024,
        },
        rl={
            "steps": 1,
            "group_size": 2,
            "prompts_per_step": 2,
            "max_completion_tokens": 6,
            "learning_rate": 1e-4,
            "hint_steps": 1,
        },
        eval={"n": 2, "ks": [1, 2], "max_tokens": 6},
        compare={"seeds": [0, 1], "baseline_seeds": [1], "hint_share": 1.0},
    )
    assert main(["compare", str(path)]) == 0
    run = tmp_path / "run"
    result = json.loads((run / "compare.json").read_text())
    summary = result["summary"]
    assert set(summary) == {"base", "rl", "hint_rl", "sft_reference", "sft_reflection", "rft", "int"}
    for arm in ("rl", "hint_rl", "sft_reference", "sft_reflection", "rft", "int"):
        seeds = [0, 1] if arm in ("rl", "int") else [1]
        assert summary[arm]["seeds"] == seeds
        # The table is the mean and spread over seeds of what each seed's eval measured, and each
        # seed's pass@1 is its own samples' accuracy.
        per_seed = []
        for seed in seeds:
            assert (run / f"rl-{arm}-s{seed}" / "model" / "config.json").exists()
            rollouts = read_stage_records(run, f"eval-{arm}-s{seed}", Rollout)
            by_problem: dict[str, list[bool]] = {}
            for r in rollouts:
                by_problem.setdefault(r.problem_id, []).append(r.correct)
            per_seed.append(statistics.fmean(sum(v) / len(v) for v in by_problem.values()))
            assert json.loads((run / f"eval-{arm}-s{seed}" / "eval.json").read_text())["overall"][
                "pass@1"
            ] == pytest.approx(per_seed[-1])
        mean, spread = summary[arm]["pass@1"]
        assert mean == pytest.approx(statistics.fmean(per_seed))
        assert spread == pytest.approx(statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0)
    # Paired difference from plain RL: the mean of per-problem differences is the difference of the means.
    for arm in ("int", "sft_reference"):
        diff, lo, hi = summary[arm]["vs_rl"]["pass@1"]
        assert diff == pytest.approx(summary[arm]["pass@1"][0] - summary["rl"]["pass@1"][0])
        assert lo <= diff <= hi
    assert "vs_rl" not in summary["rl"] and "Δ pass@1 vs rl" in (run / "compare.md").read_text()
    # Each seed is its own RL stage, fingerprinted with its seed.
    s0, s1 = (json.loads((run / f"rl-rl-s{s}" / "manifest.json").read_text()) for s in (0, 1))
    assert s0["config_hash"] != s1["config_hash"]
    # SFT arms start RL from their own checkpoint; the reference arm always has rows to train on.
    assert result["arms"]["sft_reference"]["init"].endswith("sft-reference/model")
    assert result["arms"]["int"]["init"].endswith("sft/model")
    assert result["arms"]["rl"]["init"] is None
    hint_counts = json.loads((run / "rl-hint_rl-s1" / "manifest.json").read_text())["counts"]
    plain = json.loads((run / "rl-rl-s0" / "manifest.json").read_text())["counts"]["hinted_problems"]
    hinted = hint_counts["hinted_problems"]
    assert hinted > 0 and plain == 0
    # The POPE mix: every problem plain, plus a guided copy of each hinted one.
    assert hint_counts["rl_prompts"] == hint_counts["train_problems"] + hinted
    assert summary["sft_reference"]["entropy_at_rl_start"] != summary["base"]["entropy_at_rl_start"]
    assert (run / "rl_curves.png").exists()
    assert "| int |" in (run / "compare.md").read_text()

    # The same table from one compare.json per (arm, seed), as the lab gathers runs made in parallel.
    arms = result["arms"]
    pieces = []
    for arm, entry in arms.items():
        for i, seed in enumerate(entry["seeds"]):
            others = tuple(f"-s{s}" for s in entry["seeds"] if s != seed)
            own = [name for name in entry["stages"] if not name.endswith(others)] if others else entry["stages"]
            pieces.append({"base": arms["base"], arm: {**entry, "seeds": [seed], "eval": [entry["eval"][i]]}})
            pieces[-1][arm] |= {"rl": [entry["rl"][i]], "stages": own}
    assert compare.merge_tables(pieces) == arms
    backwards = compare.merge_tables(pieces[::-1])
    assert all(backwards[a]["seeds"] == arms[a]["seeds"] and backwards[a]["eval"] == arms[a]["eval"] for a in arms)
    ctx = RunContext(load_config(path), run)
    try:
        assert json.loads(json.dumps(compare.summarize(ctx, compare.merge_tables(pieces), [1, 2]))) == summary
    finally:
        ctx.close()

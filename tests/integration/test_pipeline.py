"""`intrain run` end to end on the tiny model: sample -> eval -> propose -> filter -> sft -> eval.

A random tiny model cannot verify attempts, so the proposer and the continuation sampler are a
scripted stand-in (the `scripted` fixture) wrapped around the real engine; sampling, evaluation,
parsing, filtering, SFT (real TRL training of the tiny model) and the report all run for real.
"""

import json

import pyarrow.parquet as pq
from tiny_configs import write_config

from intrain.cli import main
from intrain.steps import split_substeps


def test_run_end_to_end(tmp_path, tiny_model_dir, scripted, capsys):
    path = write_config(
        tmp_path,
        tiny_model_dir,
        sample={"n": 2, "max_tokens": 10, "shard_size": 2},
        propose={"n": 2, "template": "compact", "max_prompt_tokens": 4096, "shard_size": 3},
        filter={"n": 4, "wave_size": 2, "diagnose": False, "shard_size": 4},
        sft={
            "learning_rate": 1e-3,
            "epochs": 1,
            "effective_batch_size": 2,
            "per_device_batch_size": 2,
            "max_length": 1024,
            "save_steps": 100,
        },
        rl={"enabled": True, "steps": 1, "group_size": 2, "prompts_per_step": 2, "max_completion_tokens": 6},
        eval={"n": 2, "ks": [1, 2], "max_tokens": 8, "shard_size": 2},
    )
    assert main(["run", str(path)]) == 0
    run = tmp_path / "run"

    summary = json.loads((run / "summary.json").read_text())
    funnel = dict((name, count) for name, count in summary["funnel"])
    assert funnel["problems"] == 4 and funnel["rollouts"] == 8
    assert funnel["proposals"] == 2 * funnel["failed attempts proposed on"]
    # Two proposals per attempt, the first ok one per attempt goes on; half the problems' continuations succeed.
    assert funnel["first per attempt"] == funnel["failed attempts proposed on"]
    assert 0 < funnel["kept by continuation filter"] < funnel["first per attempt"]
    assert funnel["SFT rows"] == funnel["kept by continuation filter"]
    assert set(summary["eval"]) == {"base", "int-sft", "int-rl"}
    # RL starts from the InT checkpoint, under the stage name `intrain compare` reuses.
    rl_manifest = json.loads((run / "rl-int-s0" / "manifest.json").read_text())
    assert rl_manifest["init_model"].endswith("sft/model") and rl_manifest["counts"]["steps"] == 1

    filtered = [r for p in sorted((run / "filter").glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]
    for r in filtered:
        # Early stopping: a kept row stops at its first correct wave; a rejected row uses all n.
        assert r["continuations"] == (2 if r["kept"] else 4)

    sft_rows = pq.read_table(run / "sft" / "shard-00000.parquet").to_pylist()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for r in sft_rows:
        target = [t for t in r["labels"] if t != -100]
        assert tok.decode(target) == r["target"]
        assert target[-1] != tok.eos_token_id
        assert r["labels"][: len(r["input_ids"]) - len(target)] == [-100] * (len(r["input_ids"]) - len(target))
    assert (run / "sft" / "model" / "config.json").exists()
    assert "| int-sft |" in (run / "report.md").read_text() and "| int-rl |" in (run / "report.md").read_text()
    printed = capsys.readouterr().err  # the funnel and the table are printed for the user
    assert "kept by continuation filter" in printed and "| int-rl |" in printed
    # A second run resumes everything and changes nothing.
    mtime = (run / "sft" / "model" / "config.json").stat().st_mtime_ns
    assert main(["run", str(path)]) == 0
    assert (run / "sft" / "model" / "config.json").stat().st_mtime_ns == mtime


def test_filter_diagnose_compares_intervention_with_original_step(tmp_path, tiny_model_dir, scripted):
    path = write_config(
        tmp_path,
        tiny_model_dir,
        sample={"n": 2, "max_tokens": 8},
        propose={"n": 1, "template": "compact", "max_prompt_tokens": 4096},
        filter={"n": 4, "wave_size": 2, "diagnose": True},
    )
    for stage in ("sample", "propose", "filter"):
        assert main([stage, path]) == 0
    run = tmp_path / "run"
    rows = [r for p in sorted((run / "filter").glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert rows
    for r in rows:
        # No early stopping in diagnose mode: both prefixes get all n continuations.
        assert r["continuations"] == 4 and r["original_continuations"] == 4
        flagged = split_substeps(r["attempt"])[r["location"] - 1]
        assert r["original_step_prefix"] == r["attempt"][: flagged.end]
    counts = json.loads((run / "filter" / "manifest.json").read_text())["counts"]
    assert {
        "intervention_coverage",
        "intervention_accuracy",
        "original_step_coverage",
        "original_step_accuracy",
    } <= set(counts)
    # The scripted continuer answers by problem, whatever the prefix: both sides must agree.
    assert counts["intervention_accuracy"] == counts["original_step_accuracy"] > 0

"""`scripts/reference_sft_epochs.py` on the tiny model: one SFT per epoch count, each evaluated."""

import json
import subprocess
import sys
from pathlib import Path

from tiny_configs import write_config

from intrain.records import Rollout
from intrain.store import read_stage_records

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reference_sft_epochs.py"


def test_each_epoch_count_gets_its_own_sft_and_eval(tmp_path, tiny_model_dir):
    config = write_config(
        tmp_path,
        tiny_model_dir,
        sft={"learning_rate": 1e-3, "effective_batch_size": 2, "per_device_batch_size": 2, "max_length": 1024},
        eval={"n": 2, "ks": [1, 2], "max_tokens": 6},
    )
    root = tmp_path / "epochs"
    command = [sys.executable, str(SCRIPT), config, "--run-root", str(root), "--epochs", "1", "2", "--marker", "a"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    rows = json.loads((root / "summary.json").read_text())
    assert [r["epochs"] for r in rows] == [1, 2]
    assert [r["sft_steps"] for r in rows] == [2, 4]  # 4 references, batch 2: 2 steps an epoch
    assert [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"epochs"')] == rows
    for row in rows:
        run = root / f"e{row['epochs']}"
        assert json.loads((run / "sft-reference" / "manifest.json").read_text())["counts"]["steps"] == row["sft_steps"]
        samples = read_stage_records(run, "eval-sft_reference-sft", Rollout)
        assert row["samples_with_marker"] == [sum("a" in s.completion for s in samples), len(samples)] and samples
        assert row["pass@1"] == sum(s.correct for s in samples) / len(samples)  # 2 problems x 2 samples each
        assert set(row) >= {"pass@2", "entropy", "first_loss", "last_loss"} and row["entropy"] > 0

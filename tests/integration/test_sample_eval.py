"""sample -> eval end to end on the tiny model, and resume after a killed `intrain sample`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tiny_configs import write_config

from intrain.cli import main


def sample_config(tmp_path: Path, model_dir: str, **sections) -> Path:
    base = {
        "data": {
            "train": {"kind": "arithmetic", "size": 6, "seed": 1},
            "eval": {"kind": "arithmetic", "size": 4, "seed": 2},
        },
        "sample": {"n": 2, "max_tokens": 12, "shard_size": 2},
        "eval": {"n": 3, "ks": [1, 2], "max_tokens": 12, "shard_size": 2},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Path(write_config(tmp_path, model_dir, **base))


def test_sample_then_eval(tmp_path, tiny_model_dir, capsys):
    config = sample_config(tmp_path, tiny_model_dir)
    assert main(["sample", str(config)]) == 0
    run = tmp_path / "run"
    manifest = json.loads((run / "sample" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["rollouts"] == 12
    assert manifest["shards"] == 3 and manifest["counts"]["problems"] == 6

    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(run / "sample" / "shard-*.parquet"), split="train")
    assert set(rows.column_names) >= {
        "problem_id",
        "completion",
        "correct",
        "reason",
        "finish_reason",
        "completion_tokens",
        "reference_solution",
        "answer",
    }
    assert all(r in {"correct", "wrong", "no_answer", "timeout", "parse_error"} for r in rows["reason"])
    assert all(t <= 12 for t in rows["completion_tokens"])

    assert main(["eval", str(config)]) == 0
    out = capsys.readouterr().out
    assert "pass@2" in out and "| base |" in out
    metrics = json.loads((run / "eval-base" / "eval.json").read_text())
    assert metrics["overall"]["problems"] == 4 and metrics["overall"]["samples"] == 12
    assert 0 <= metrics["overall"]["pass@1"] <= metrics["overall"]["pass@2"] <= 1
    assert {"no_answer_rate", "truncation_rate"} <= set(metrics["overall"])


def test_rerun_skips_and_changed_config_refuses(tmp_path, tiny_model_dir, capsys):
    config = sample_config(tmp_path, tiny_model_dir)
    assert main(["sample", str(config)]) == 0
    first = (tmp_path / "run" / "sample" / "shard-00000.parquet").stat().st_mtime_ns
    assert main(["sample", str(config)]) == 0
    assert (tmp_path / "run" / "sample" / "shard-00000.parquet").stat().st_mtime_ns == first
    assert main(["sample", str(config), "--set", "sample.n=3"]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["sample", str(config), "--set", "sample.n=3", "--force"]) == 0


def test_bad_data_is_one_line_error(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n{"id": "b", "problem": "", "answer": "3"}\n')
    config = sample_config(tmp_path, tiny_model_dir)
    code = main(["sample", str(config), "--set", f"data.train={{kind: file, path: {bad}}}"])
    err = capsys.readouterr().err
    assert code == 2 and "b" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "sample" / "shard-00000.parquet").exists()


def _rows(run_dir: Path):
    import pyarrow.parquet as pq

    return [pq.read_table(p).to_pylist() for p in sorted((run_dir / "sample").glob("shard-*.parquet"))]


def test_resume_after_kill_matches_uninterrupted(tmp_path, tiny_model_dir):
    config = sample_config(
        tmp_path,
        tiny_model_dir,
        sample={"n": 2, "max_tokens": 24, "shard_size": 1},
        data={"train": {"kind": "arithmetic", "size": 8, "seed": 3}},
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "intrain.cli", "sample", str(config)]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--run-dir", str(killed_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not (killed_dir / "sample" / "shard-00001.parquet").exists():
        assert proc.poll() is None, "sample finished before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((killed_dir / "sample").glob("shard-*.parquet")))
    assert 2 <= partial < 8
    assert json.loads((killed_dir / "sample" / "manifest.json").read_text())["status"] == "running"

    subprocess.run([*cmd, "--run-dir", str(killed_dir)], env=env, check=True, capture_output=True)
    subprocess.run([*cmd, "--run-dir", str(tmp_path / "clean")], env=env, check=True, capture_output=True)
    assert _rows(killed_dir) == _rows(tmp_path / "clean")
    assert len(_rows(killed_dir)) == 8

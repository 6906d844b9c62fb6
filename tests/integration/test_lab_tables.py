"""`scripts/lab_tables.py run --quick`: the lab model pretrained from scratch, its hard split, and the
part of the experiment `--tables` asks for, one process per run, gathered into tables; then `--resume`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lab_tables.py"


@pytest.mark.slow
def test_table4_and_easy_run_only_their_jobs_with_the_asked_rl_budget_and_resume(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    command = [sys.executable, str(SCRIPT), "run", "--quick", "--device", "cpu", "--out", str(out), "--work", str(work)]
    done = subprocess.run(
        [*command, "--tables", "table4", "easy", "--rl-steps", "1", "--rl-lr", "3e-5"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads((out / "lab_tables.json").read_text())
    assert result["failed"] == []
    assert result["sizes"]["rl_steps"] == 1 and result["sizes"]["rl_lr"] == 3e-5
    # Only Table 4 and the easy split: no dose-response, Table 2 or filter precision.
    jobs = sorted(p.name for p in work.iterdir())
    assert jobs == ["easy-rl-lr2e-05", "gather-main", "init-main", "lab", "prep"] + [
        f"rl-main-{arm}-s{seed}" for arm in ("int", "rl", "sft_reference") for seed in (0, 1)
    ]
    assert list(result["tables"]) == ["main"]
    easy = result["easy_rl"]["2e-05"]  # the easy split keeps its own lr, with the asked steps
    assert easy["steps"] == 1 and len(easy["reward"]) == 1 and set(easy["eval_delta"]) == {"pass@1", "pass@4"}
    table = result["tables"]["main"]
    assert {"base", "rl", "sft_reference", "int"} <= set(table)
    for arm in ("rl", "sft_reference", "int"):
        assert table[arm]["seeds"] == [0, 1]
    assert "vs_rl" in table["int"] and "vs_rl" in table["sft_reference"]
    # The oracle without noise puts every intervention at the true first error, and the filter's kept rows are those.
    placement = table["_placement"]
    assert placement["earlier"]["candidates"] == placement["later"]["candidates"] == 0
    assert placement["at"] == {
        "candidates": table["_counts"]["filter"]["candidates"],
        "kept": table["_counts"]["filter"]["kept"],
    }
    # Every RL run took the asked budget and lr.
    for seed in (0, 1):
        spec = json.loads((work / f"rl-main-rl-s{seed}" / "spec.json").read_text())
        assert spec["config"]["rl"]["steps"] == 1 and spec["config"]["rl"]["learning_rate"] == 3e-5
    report = (out / "lab_tables.md").read_text()
    assert "Table 4" in report and "Plain RL on the easy split, lr 2e-05 (1 steps)" in report
    assert f"| int (noise 0) | {placement['at']['kept']} / {placement['at']['candidates']} | 0 / 0 | 0 / 0 |" in report

    # --resume reuses every job that finished with the same spec and reruns the one that did not; Table 2,
    # asked for now, runs its starting points and its RL at the seed given.
    (work / "rl-main-rl-s1" / "done").unlink()
    first_eval = (work / "rl-main-int-s0" / "run" / "compare.json").read_text()
    again = subprocess.run(
        [*command, "--tables", "table4", "table2", "--table2-seeds", "1", "--rl-steps", "1", "--rl-lr", "3e-5"]
        + ["--resume"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads((out / "lab_tables.json").read_text())
    assert sorted(result["reused"]) == sorted(
        ["lab", "prep", "init-main"]
        + [f"rl-main-{arm}-s{s}" for arm in ("int", "sft_reference") for s in (0, 1)]
        + ["rl-main-rl-s0"]
    )
    assert (work / "rl-main-rl-s1" / "done").exists() and result["failed"] == []
    assert (work / "rl-main-int-s0" / "run" / "compare.json").read_text() == first_eval
    assert result["tables"]["main"]["rl"]["seeds"] == [0, 1]
    for variant in ("t2-nofilter", "t2-intervention", "t2-suffix"):
        assert result["tables"][variant]["int"]["seeds"] == [1]
        assert (work / f"rl-{variant}-int-s1" / "done").exists() and not (work / f"rl-{variant}-int-s0").exists()
    assert "2e-05" in result["easy_rl"]  # finished jobs in the folder are gathered even when not asked again

    # A work folder moved elsewhere resumes too: paths inside it are compared relative to it.
    moved = tmp_path / "moved"
    work.rename(moved)
    command[command.index(str(work))] = str(moved)
    third = subprocess.run(
        [*command, "--tables", "table4", "--rl-steps", "1", "--rl-lr", "3e-5", "--resume"],
        capture_output=True,
        text=True,
    )
    assert third.returncode == 0, third.stderr[-2000:]
    result = json.loads((out / "lab_tables.json").read_text())
    assert sorted(result["reused"]) == sorted(
        ["lab", "prep", "init-main"] + [f"rl-main-{arm}-s{s}" for arm in ("int", "rl", "sft_reference") for s in (0, 1)]
    )

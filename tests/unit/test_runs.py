"""`intrain runs [DIR]`: run directories, their status (complete / partial / refused), fingerprint and
headline numbers; a clear message for an empty or missing DIR."""

from __future__ import annotations

import json

import pytest

from intrain.cli import main
from intrain.runs import find_runs, run_fingerprint, summarize
from intrain.store import Stage, StageConfigChanged, refused_stages


def finished_run(run_dir, eval_pass1: float = 0.25) -> None:
    for name, counts in [("sample", {"problems": 4}), ("filter", {"kept": 3}), ("sft", {"sft_rows": 3})]:
        Stage(run_dir, name, f"hash-{name}").finish(counts)
    for label, value in [("base", 0.1), ("int-s0", eval_pass1)]:
        stage = Stage(run_dir, f"eval-{label}", f"hash-{label}")
        stage.write_json("eval.json", {"overall": {"pass@1": value}})
        stage.finish({"problems": 2})
    for seed, steps in [(0, 5), (1, 7)]:
        Stage(run_dir, f"rl-int-s{seed}", f"hash-rl{seed}").finish({"steps": steps})


def test_a_finished_run_is_complete_with_its_headline_numbers(tmp_path):
    finished_run(tmp_path / "a")
    s = summarize(tmp_path / "a")
    assert s.status == "complete"
    # The order the stages were created in (the pipeline's within a second).
    assert s.stages[0] == "sample" and len(s.stages) == 7
    assert (s.kept, s.sft_rows, s.rl_steps) == (3, 3, 12)
    assert (s.eval_label, s.eval_pass1) == ("int-s0", 0.25)  # the latest eval, not the base one


def test_a_running_stage_makes_the_run_partial_and_a_refusal_refused_until_redone(tmp_path):
    run = tmp_path / "run"
    finished_run(run)
    Stage(run, "propose", "p").write_shard(0, [{"a": 1}])  # killed mid-stage: running, with a shard
    assert summarize(run).status == "partial: propose"
    with pytest.raises(StageConfigChanged):
        Stage(run, "propose", "changed")
    assert set(refused_stages(run)) == {"propose"} and summarize(run).status == "refused: propose"
    Stage(run, "propose", "p")  # the original config again: it resumes, no longer refused
    assert refused_stages(run) == {} and summarize(run).status == "partial: propose"
    with pytest.raises(StageConfigChanged):
        Stage(run, "propose", "changed")
    Stage(run, "propose", "changed", force=True)  # redone under the new config
    assert refused_stages(run) == {}


def test_fingerprint_is_shared_exactly_by_runs_of_the_same_stage_fingerprints(tmp_path):
    finished_run(tmp_path / "a")
    finished_run(tmp_path / "b", eval_pass1=0.5)
    Stage(tmp_path / "c", "sample", "another").finish({})
    a, b, c = (summarize(tmp_path / x).fingerprint for x in "abc")
    assert a == b != c and len(a) == 12
    assert run_fingerprint({"sample": {"config_hash": "x"}}) != run_fingerprint({"sample": {"config_hash": "y"}})


def test_runs_are_found_nested_but_not_inside_a_run(tmp_path):
    finished_run(tmp_path / "paper" / "seed0")
    finished_run(tmp_path / "demo")
    (tmp_path / "notes").mkdir()
    assert find_runs(tmp_path) == [tmp_path / "demo", tmp_path / "paper" / "seed0"]
    assert find_runs(tmp_path / "demo") == [tmp_path / "demo"]


def test_cli_lists_runs_as_a_table(tmp_path, capsys):
    finished_run(tmp_path / "demo")
    Stage(tmp_path / "half [1]", "sample", "h")  # brackets in a folder name are text, not markup
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "complete" in out and "0.250 (int-s0)" in out and "12" in out
    assert "half [1]" in out and "partial: sample" in out


def test_cli_on_an_empty_or_missing_dir_says_so(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert f"no runs under {tmp_path}" in capsys.readouterr().out
    assert main(["runs", str(tmp_path / "nope")]) == 0
    assert f"no runs: {tmp_path / 'nope'} does not exist" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["runs", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'file'}: not a directory\n"


def test_an_unreadable_manifest_does_not_make_a_stage(tmp_path):
    finished_run(tmp_path / "run")
    (tmp_path / "run" / "broken").mkdir()
    (tmp_path / "run" / "broken" / "manifest.json").write_text("{not json")
    assert "broken" not in summarize(tmp_path / "run").stages
    assert json.loads((tmp_path / "run" / "sample" / "manifest.json").read_text())["status"] == "complete"

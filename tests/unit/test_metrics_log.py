"""RUN/metrics.jsonl (a line per finished stage, append-only, torn lines contained) and `output.report_to`
(a missing tracker package is a one-line error at config load; a present one gets every finished stage)."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import pytest

from intrain.cli import main
from intrain.config import ConfigError, ModelConfig, RLConfig, load_config
from intrain.report import trackers
from intrain.store import METRICS_NAME, Stage, metrics_trackers, read_metrics, report_metrics_to


def test_finishing_a_stage_appends_its_counts_and_timings(tmp_path):
    Stage(tmp_path, "sample", "h").finish({"problems": 4, "failed": 3}, {"generate_s": 1.5})
    stage = Stage(tmp_path, "eval-base", "h")
    stage.finish({"problems": 2}, metrics={"pass@1": 0.5})
    lines = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert [(line["stage"], line["event"], line["step"]) for line in lines] == [
        ("sample", "finish", None),
        ("eval-base", "finish", None),
    ]
    assert lines[0]["metrics"]["problems"] == 4 and lines[0]["metrics"]["generate_s"] == 1.5
    assert "wall_s" in lines[0]["metrics"] and lines[0]["time"][:2] == "20"
    assert lines[1]["metrics"]["pass@1"] == 0.5
    # The manifest keeps its own fields: the extra metrics go to metrics.jsonl only.
    assert "pass@1" not in json.loads((stage.path / "manifest.json").read_text())["counts"]


def test_a_torn_last_line_is_skipped_and_the_next_line_starts_fresh(tmp_path):
    Stage(tmp_path, "sample", "h").finish({"problems": 1})
    with (tmp_path / METRICS_NAME).open("a") as fh:
        fh.write('{"time": "2026-01-01T00:00:00", "stage": "pro')  # a process killed mid-write
    Stage(tmp_path, "propose", "h").finish({"proposals": 2})
    assert [r["stage"] for r in read_metrics(tmp_path)] == ["sample", "propose"]
    assert read_metrics(tmp_path / "nothing-here") == []


def test_only_rank_zero_appends(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    Stage(tmp_path, "sample", "h").finish({"problems": 1})
    assert not (tmp_path / METRICS_NAME).exists()


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "trackio"])
def test_report_to_a_missing_package_is_one_line_at_config_load(tracker, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, tracker, None)  # importlib.util.find_spec -> None: not installed
    with pytest.raises(ConfigError) as raised:
        load_config(None, [f"output.report_to=[{tracker}]"])
    message = str(raised.value)
    assert "\n" not in message and "output.report_to" in message and f"{tracker} is not installed" in message
    config = tmp_path / "c.yaml"
    config.write_text(f"output: {{report_to: [{tracker}]}}\n")
    assert main(["sample", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"output.report_to: Value error, {tracker}" in err


def fake_wandb(monkeypatch) -> types.ModuleType:
    """A stand-in wandb module that records what it is given."""
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # find_spec reads it
    module.run = None
    module.logged, module.inits, module.finished = [], [], []

    def init(**kwargs):
        module.inits.append(kwargs)
        module.run = object()

    module.init = init
    module.log = module.logged.append
    module.finish = lambda: module.finished.append(True)
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_report_to_forwards_each_finished_stage(tmp_path, monkeypatch):
    wandb = fake_wandb(monkeypatch)
    config = load_config(None, ["output.report_to=[wandb]"])  # importable now: validation passes
    report_metrics_to(tmp_path, config.output.report_to)
    try:
        Stage(tmp_path, "sample", "h").finish({"problems": 4, "vllm": False, "note": "text"})
        Stage(tmp_path, "filter", "h").finish({"kept": 2})
    finally:
        trackers.close_all()
        report_metrics_to(tmp_path, ())
    assert wandb.inits == [{"project": "intrain", "name": tmp_path.name}]  # one run for the whole run dir
    assert wandb.logged[0]["sample/problems"] == 4.0 and "sample/wall_s" in wandb.logged[0]
    assert "sample/vllm" not in wandb.logged[0] and "sample/note" not in wandb.logged[0]  # numbers only
    assert wandb.logged[1]["filter/kept"] == 2.0 and wandb.finished == [True]


def test_trainers_find_the_trackers_of_their_run_and_pass_them_to_trl(tmp_path, monkeypatch):
    from intrain.training.grpo import grpo_args

    fake_wandb(monkeypatch)
    monkeypatch.chdir(tmp_path)
    report_metrics_to("run", ("wandb",))  # as RunContext registers output.run_dir, relative or not
    try:
        # train_sft / train_grpo look the run up from their stage folder's parent.
        assert metrics_trackers((tmp_path / "run" / "sft").parent) == ("wandb",)
        assert metrics_trackers(tmp_path / "other") == ()
    finally:
        report_metrics_to("run", ())
    assert grpo_args(RLConfig(), ModelConfig(), tmp_path, "cpu").report_to == []  # default: none
    args = grpo_args(RLConfig(), ModelConfig(), tmp_path, "cpu", report_to=("wandb",))
    assert args.report_to == ["wandb"]

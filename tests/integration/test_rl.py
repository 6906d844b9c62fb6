"""The RL stage on the tiny model: real TRL GRPO steps on CPU, the step log, resume, hint prompts.

A random tiny model never writes a boxed answer, so the resume tests grade with a scripted grader
(correct = even text length): rewards then differ within groups, advantages are non-zero and the
weights really move, which is what makes "resumed == uninterrupted" a meaningful check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from intrain.config import Config
from intrain.data import DataError
from intrain.data.arithmetic import generate_arithmetic
from intrain.grading import Grader, Verdict
from intrain.records import FilterResult
from intrain.stages import rl
from intrain.stages.common import RunContext
from intrain.store import Stage, StageConfigChanged
from intrain.training import grpo

LOG_KEYS = {
    "step",
    "reward",
    "zero_adv_ratio",
    "completion_length",
    "clipped_ratio",
    "entropy",
    "step_time",
    "learning_rate",
    "loss",
    "groups",
}


def make_config(model_dir: str, size: int = 4, **rl_overrides) -> Config:
    rl_cfg = {
        "steps": 4,
        "group_size": 2,
        "prompts_per_step": 2,
        "max_completion_tokens": 8,
        "save_steps": 1,
        "learning_rate": 1e-3,
        "lr_scheduler": "constant",
    }
    rl_cfg.update(rl_overrides)
    return Config.model_validate(
        {
            "model": {"path": model_dir, "device": "cpu"},
            "data": {
                "train": {"kind": "arithmetic", "size": size, "seed": 11},
                "prompt_template": "{problem}\nPut your final answer within \\boxed{}.",
            },
            "rl": rl_cfg,
            "grading": {"workers": 1},
        }
    )


class ParityGrader(Grader):
    """Scripted verdicts (even length = correct) that records every graded batch; no workers."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.batches: list[list[str]] = []

    def grade(self, completions, golds):
        self.batches.append(list(completions))
        return [
            Verdict(correct=len(c) % 2 == 0, reason="correct" if len(c) % 2 == 0 else "wrong", extracted=None)
            for c in completions
        ]


class Interrupted(Exception):
    pass


def interrupt_after(monkeypatch, step: int) -> None:
    """Make the run die right after checkpoint-`step` is written, like a kill between steps."""
    real = grpo.StepLog

    def step_log(path, reward):
        callback = real(path, reward)

        def on_save(args, state, control, **kwargs):
            if state.global_step == step:
                raise Interrupted

        callback.on_save = on_save
        return callback

    monkeypatch.setattr(grpo, "StepLog", step_log)


def load_weights(path: str):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):
    """Four steps in one go with the scripted grader: the reference for the resume test."""
    grader = ParityGrader()
    ctx = RunContext(make_config(tiny_model_dir), tmp_path_factory.mktemp("uninterrupted"), _grader=grader)
    stage = rl.run(ctx)
    return stage, grader


def test_uninterrupted_run_outputs(uninterrupted):
    from transformers import AutoModelForCausalLM

    stage, grader = uninterrupted
    records = rl.read_log(stage.path / rl.LOG_NAME)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert set(r) >= LOG_KEYS, LOG_KEYS - set(r)
        assert r["completion_length"] <= 8 and 0 <= r["clipped_ratio"] <= 1
        # TRL's frac_reward_zero_std is the share of prompt groups whose rewards are all equal.
        flat = [g[1] for g in r["groups"]]
        assert r["zero_adv_ratio"] == pytest.approx(sum(c in (0, 2) for c in flat) / len(flat))
        assert r["reward"] == pytest.approx(sum(flat) / (2 * len(flat)))
    assert len(grader.batches) == 4 and all(len(b) == 4 for b in grader.batches)  # 2 prompts x group 2
    # On-policy GRPO loss is 0 in value (ratio 1, advantages sum to 0), but its gradient is not.
    assert any(r["grad_norm"] > 0 for r in records)

    manifest = stage.manifest()
    assert manifest["status"] == "complete"
    counts = manifest["counts"]
    assert counts["steps"] == 4 and counts["rollouts"] == 16 and counts["resumed_from_step"] == 0
    assert counts["train_problems"] == 4 and counts["hinted_problems"] == 0 and counts["vllm"] is False
    assert counts["reward_last10pct"] == records[-1]["reward"]
    assert counts["zero_adv_ratio_mean"] == pytest.approx(sum(r["zero_adv_ratio"] for r in records) / 4)
    assert manifest["model"] == str(stage.path / "model")
    model = AutoModelForCausalLM.from_pretrained(manifest["model"])
    assert model.config.num_hidden_layers == 2
    assert (Path(manifest["model"]) / "tokenizer.json").exists()
    # A completed stage keeps its final model, not its resume points (output.keep_checkpoints: 0).
    assert not (stage.path / "checkpoints").exists()


def test_resume_continues_where_the_run_died(tiny_model_dir, tmp_path, monkeypatch, uninterrupted):
    reference, reference_grader = uninterrupted
    cfg = make_config(tiny_model_dir)
    grader = ParityGrader()
    interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupted):
        rl.run(RunContext(cfg, tmp_path, _grader=grader))
    stage_dir = tmp_path / "rl"
    assert json.loads((stage_dir / "manifest.json").read_text())["status"] == "running"
    assert [r["step"] for r in rl.read_log(stage_dir / rl.LOG_NAME)] == [1, 2, 3]
    # A log line of a step past the last checkpoint (died after logging, before saving) is redone.
    with (stage_dir / rl.LOG_NAME).open("a") as fh:
        fh.write(json.dumps({"step": 4, "reward": -1}) + "\n")
    # ... and so is a checkpoint killed mid-save (no trainer_state.json, which Trainer writes last).
    half = stage_dir / "checkpoints" / "checkpoint-4"
    half.mkdir()
    for f in (stage_dir / "checkpoints" / "checkpoint-3").iterdir():
        if f.is_file() and f.name != "trainer_state.json":
            shutil.copy(f, half / f.name)

    monkeypatch.undo()
    resumed_grader = ParityGrader()
    stage = rl.run(RunContext(cfg, tmp_path, _grader=resumed_grader))
    records = rl.read_log(stage_dir / rl.LOG_NAME)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert len(resumed_grader.batches) == 1  # only step 4 was trained again
    counts = stage.manifest()["counts"]
    assert counts["steps"] == 4 and counts["resumed_from_step"] == 3

    # Same prompts per step (data order survives the epoch boundary: 2 steps per epoch here) ...
    expected = rl.read_log(reference.path / rl.LOG_NAME)
    assert [r["groups"] for r in records] == [r["groups"] for r in expected]
    # ... the same rollouts at step 4 (RNG state restored) and the same final weights.
    assert resumed_grader.batches[0] == reference_grader.batches[3]
    ours, theirs = load_weights(rl.trained_model(stage)), load_weights(rl.trained_model(reference))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max().item() < 1e-6, name


def test_real_grader_label_and_rerun(tiny_model_dir, tmp_path):
    cfg = make_config(tiny_model_dir, steps=2, save_steps=10)
    ctx = RunContext(cfg, tmp_path)
    try:
        stage = rl.run(ctx, label="rl-int")
        assert stage.path == tmp_path / "rl-int"
        records = rl.read_log(stage.path / rl.LOG_NAME)
        assert [r["step"] for r in records] == [1, 2]
        assert all(r["reward"] == 0.0 and r["no_answer_ratio"] == 1.0 for r in records)  # no boxed answers
        assert not (stage.path / "checkpoints" / "checkpoint-1").exists()
        mtime = (stage.path / "model" / "model.safetensors").stat().st_mtime_ns
        again = rl.run(ctx, label="rl-int")  # complete: nothing is retrained
        assert (again.path / "model" / "model.safetensors").stat().st_mtime_ns == mtime
        assert again.manifest()["counts"] == stage.manifest()["counts"]
    finally:
        ctx.close()


# ----------------------------------------------------------------------------- no training below


def test_grpo_args_is_the_paper_recipe(tmp_path):
    cfg = make_config(
        "unused",
        steps=7,
        group_size=8,
        prompts_per_step=4,
        per_device_batch_size=8,
        max_completion_tokens=64,
        learning_rate=1e-6,
        save_steps=5,
    )
    args = grpo.grpo_args(cfg.rl, cfg.model, tmp_path, "cpu")
    assert args.beta == 0.0 and args.scale_rewards == "none" and args.loss_type == "dapo"
    assert args.num_generations == 8 and args.num_iterations == 1
    assert args.per_device_train_batch_size == 8 and args.gradient_accumulation_steps == 4
    # One generation batch = one optimizer step = 4 prompts x 8 rollouts.
    assert args.steps_per_generation == 4 and args.generation_batch_size == 32
    assert args.max_steps == 7 and args.save_steps == 5 and args.learning_rate == 1e-6
    assert args.temperature == 1.0 and args.top_p == 1.0 and args.max_completion_length == 64
    assert args.use_vllm is False and args.use_cpu is True and args.bf16 is False
    assert args.remove_unused_columns is False and args.report_to == []
    # Default micro-batch: one group.
    default = make_config("unused", group_size=4, prompts_per_step=3)
    assert grpo.batch_layout(default.rl) == (4, 3)


@pytest.mark.parametrize(
    "cuda,vllm_importable,expected", [(False, True, False), (True, False, False), (True, True, True)]
)
def test_auto_uses_vllm_only_with_cuda_and_an_importable_vllm(monkeypatch, cuda, vllm_importable, expected):
    import sys
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    # None in sys.modules makes `import vllm` raise ImportError.
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm") if vllm_importable else None)
    assert grpo.want_vllm("auto") is expected
    assert grpo.want_vllm("never") is False and grpo.want_vllm("always") is True


def test_batch_size_must_divide_the_step():
    from intrain.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="per_device_batch_size"):
        load_config(None, ["rl.group_size=4", "rl.prompts_per_step=3", "rl.per_device_batch_size=8"])


def test_hint_prompts_mix_a_guided_and_a_plain_copy():
    problems = generate_arithmetic(8, seed=11)
    cfg = make_config("unused", size=8)
    template = cfg.data.prompt_template

    plain = rl.build_prompts(problems, template, cfg.rl)
    assert not any(r["hinted"] or rl.HINT_HEADER in r["prompt"][0]["content"] for r in plain)
    assert [r["answer"] for r in plain] == [p.answer for p in problems]
    assert [r["problem_id"] for r in plain] == [p.id for p in problems]

    # hint_share 1: every problem appears twice, plain and then guided by its first reference step.
    mixed = rl.build_prompts(problems, template, cfg.rl.model_copy(update={"hint_share": 1.0}))
    assert len(mixed) == 2 * len(problems)
    for problem, unguided, guided in zip(problems, mixed[::2], mixed[1::2], strict=True):
        question = template.replace("{problem}", problem.problem)
        assert not unguided["hinted"] and unguided["prompt"][0]["content"] == question
        assert unguided["problem_id"] == problem.id and unguided["answer"] == problem.answer
        assert guided["hinted"] and guided["problem_id"] == problem.id + rl.HINT_ID_SUFFIX
        assert guided["answer"] == problem.answer
        content = guided["prompt"][0]["content"]
        assert content.startswith(question)
        hint = content.split(rl.HINT_HEADER, 1)[1]
        assert hint == problem.reference_solution.split("\n\n")[0]  # the minimal prefix: the first step
        assert "\\boxed" not in hint

    # Longer prefixes stop before the last step, which states the answer.
    two = rl.build_prompts(problems, template, cfg.rl.model_copy(update={"hint_share": 1.0, "hint_steps": 2}))
    steps = problems[0].reference_solution.split("\n\n")
    assert two[1]["prompt"][0]["content"].endswith(rl.HINT_HEADER + "\n\n".join(steps[:2]))
    assert rl.hint_text(problems[0].reference_solution, 99) == "\n\n".join(steps[:-1])

    half = cfg.rl.model_copy(update={"hint_share": 0.5})
    rows = rl.build_prompts(problems, template, half)
    chosen = [r["problem_id"] for r in rows if r["hinted"]]
    assert len(chosen) == 4 and len(rows) == 12  # 8 plain + 4 guided copies
    assert sorted(r["problem_id"] for r in rows if not r["hinted"]) == sorted(p.id for p in problems)
    # The choice depends on the seed, not on the order of the problems.
    again = [r["problem_id"] for r in rl.build_prompts(problems[::-1], template, half) if r["hinted"]]
    assert sorted(again) == sorted(chosen)
    other = cfg.rl.model_copy(update={"hint_share": 0.5, "seed": 1})
    assert {r["problem_id"] for r in rl.build_prompts(problems, template, other) if r["hinted"]} != set(chosen)

    assert rl.hint_text("one step only", 1) is None  # giving it would give the answer
    assert rl.hint_text("", 1) is None
    assert rl.hint_text("step one\n\nstep two", 1) == "step one"


def test_run_passes_hint_share_and_init_model(tiny_model_dir, tmp_path, monkeypatch):
    seen = {}

    def fake_train(rows, rl_cfg, model_cfg, init_model, init_adapter, output_dir, reward, keep_checkpoints=0):
        seen.update(rows=rows, rl=rl_cfg, init_model=init_model, init_adapter=init_adapter)
        return {"path": str(output_dir / "model"), "steps": 0, "resumed_from_step": 0, "vllm": False}

    monkeypatch.setattr(rl, "train_grpo", fake_train)
    ctx = RunContext(make_config(tiny_model_dir), tmp_path)
    plain = rl.run(ctx)
    assert seen["init_model"] == tiny_model_dir and not any(r["hinted"] for r in seen["rows"])
    hinted = rl.run(ctx, label="rl-hint", init_model="/some/sft/model", hint_share=1.0)
    assert seen["rl"].hint_share == 1.0 and sum(r["hinted"] for r in seen["rows"]) == 4
    assert len(seen["rows"]) == 8  # each problem plain and guided
    assert seen["init_model"] == "/some/sft/model"
    assert hinted.manifest()["counts"]["hinted_problems"] == 4
    assert hinted.manifest()["counts"]["rl_prompts"] == 8 and hinted.manifest()["rl_data"] == "data.train"
    assert hinted.manifest()["init_model"] == "/some/sft/model"
    # The arm's settings are part of its fingerprint.
    assert hinted.config_hash != plain.config_hash
    with pytest.raises(ValueError, match="hint_share"):
        rl.run(ctx, label="bad", hint_share=1.5)


def _filter_result(problem_id: str, index: int, kept: bool, reference: str = "") -> FilterResult:
    """A FilterResult with neutral values for every column but the ones the RL stage reads."""
    import dataclasses
    import typing

    neutral = {str: "", int: 0, bool: False}
    hints = typing.get_type_hints(FilterResult)
    values = {
        f.name: None if type(None) in typing.get_args(hints[f.name]) else neutral.get(hints[f.name])
        for f in dataclasses.fields(FilterResult)
    }
    values.update(
        problem_id=problem_id,
        attempt_id=f"{problem_id}#{index}",
        source="src",
        problem=f"Q {problem_id}",
        answer=f"{len(problem_id)}",
        reference_solution=reference,
        status="ok",
        kept=kept,
    )
    return FilterResult(**values)


def _write_filter_stage(run_dir: Path, records: list[FilterResult], digest: str) -> None:
    stage = Stage(run_dir, "filter", digest, force=True)
    stage.write_records(0, records, FilterResult)
    stage.finish({"kept": sum(r.kept for r in records)})


@pytest.fixture
def fake_train(monkeypatch):
    seen: dict = {}

    def train(rows, rl_cfg, model_cfg, init_model, init_adapter, output_dir, reward, keep_checkpoints=0):
        seen.update(rows=rows, rl=rl_cfg)
        return {"path": str(output_dir / "model"), "steps": 0, "resumed_from_step": 0, "vllm": False}

    monkeypatch.setattr(rl, "train_grpo", train)
    return seen


def test_rl_data_source_replaces_the_training_problems(tiny_model_dir, tmp_path, fake_train):
    # The released InT-RL set's columns (the authors' README loader reads source, problem, answer).
    path = tmp_path / "int_rl.jsonl"
    path.write_text(
        "".join(
            json.dumps({"source": "omni-math", "problem": f"Problem {i}?", "answer": str(i)}) + "\n" for i in range(3)
        )
    )
    source = {
        "kind": "file",
        "path": str(path),
        "columns": {"problem": "problem", "answer": "answer", "source": "source"},
    }
    ctx = RunContext(make_config(tiny_model_dir, data=source), tmp_path / "run")
    stage = rl.run(ctx)
    assert [r["prompt"][0]["content"].split("\n")[0] for r in fake_train["rows"]] == [f"Problem {i}?" for i in range(3)]
    assert [r["answer"] for r in fake_train["rows"]] == ["0", "1", "2"]
    manifest = stage.manifest()
    assert manifest["counts"]["train_problems"] == 3 and manifest["rl_data"] == f"file:{path}"
    # With rl.data set, data.train is not an input of the RL stage (the source is, inside `rl`).
    other_train = make_config(tiny_model_dir, data=source).model_copy(deep=True)
    other_train.data.train.seed = 99
    assert rl.run(RunContext(other_train, tmp_path / "run")).config_hash == stage.config_hash


def test_rl_data_covered_trains_on_the_filter_stages_kept_problems(tiny_model_dir, tmp_path, fake_train):
    run_dir = tmp_path / "run"
    cfg = make_config(tiny_model_dir, data="covered", hint_share=1.0)
    with pytest.raises(FileNotFoundError, match="filter"):
        rl.run(RunContext(cfg, run_dir))
    assert not (run_dir / "rl").exists()  # nothing opened before the filter stage exists

    ref = "Step one.\n\nStep two.\n\nThe final answer is 2."
    records = [
        _filter_result("p2", 0, False),
        _filter_result("p1", 0, True, ref),
        _filter_result("p1", 1, True, ref),
        _filter_result("p3", 0, False),
        _filter_result("p3", 1, True),
        _filter_result("p4", 0, False),
    ]
    _write_filter_stage(run_dir, records, "first")
    stage = rl.run(RunContext(cfg, run_dir))
    rows = fake_train["rows"]
    # Distinct problems with a kept row, once each (p1 has two kept rows; p2 and p4 none) ...
    assert [r["problem_id"] for r in rows if not r["hinted"]] == ["p1", "p3"]
    # ... and a guided copy where the reference allows one (p3 has no reference).
    assert [r["problem_id"] for r in rows if r["hinted"]] == ["p1" + rl.HINT_ID_SUFFIX]
    assert rows[1]["prompt"][0]["content"].endswith(rl.HINT_HEADER + "Step one.")
    counts = stage.manifest()["counts"]
    assert counts["train_problems"] == 2 and counts["hinted_problems"] == 1 and stage.manifest()["rl_data"] == "covered"
    # The filter stage is an input: redoing it invalidates this RL stage.
    _write_filter_stage(run_dir, records, "second")
    with pytest.raises(StageConfigChanged):
        rl.run(RunContext(cfg, run_dir))

    _write_filter_stage(run_dir, [_filter_result("p1", 0, False)], "third")
    with pytest.raises(DataError, match="kept no intervention"):
        rl.run(RunContext(cfg, run_dir, force=True))


def test_a_torn_last_log_line_is_dropped_and_a_torn_middle_one_refused(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "rew')
    assert rl.read_log(log) == [{"step": 1, "reward": 0.5}]
    log.write_text('{"step": 1, "rew\n{"step": 2, "reward": 0.5}\n')
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        rl.read_log(log)

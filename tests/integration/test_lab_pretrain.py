"""`intrain lab pretrain`: a small Qwen3 trained from random weights on the arithmetic family, usable
by every stage as the policy (chat template, generation, SFT rows)."""

import json

from tiny_configs import write_config

from intrain.cli import main
from intrain.config import load_config
from intrain.lab.pretrain import pretrain_problems

PRETRAIN = {
    "examples": 48,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "num_kv_heads": 1,
    "head_dim": 16,
    "batch_size": 16,
    "vocab_size": 320,
}


def lab_config(tmp_path):
    model = tmp_path / "run" / "lab-model" / "model"  # what pretraining writes, named before it exists
    return write_config(tmp_path, str(model), lab={"pretrain": PRETRAIN})


def test_pretraining_problems_leave_out_the_runs_train_and_eval_sets(tmp_path):
    cfg = load_config(lab_config(tmp_path), ["data.train.size=30", "data.eval.size=30", "lab.pretrain.examples=400"])
    from intrain.data import load_problems

    held = {p.problem for p in load_problems(cfg.data.train)[0]} | {p.problem for p in load_problems(cfg.data.eval)[0]}
    drawn = pretrain_problems(cfg)
    assert len(drawn) == 400 and len({p.problem for p in drawn}) == 400
    assert not held & {p.problem for p in drawn}
    # Same knobs as the run's family, so the model learns the problems it will be asked.
    assert all(p.source == "arithmetic" and p.reference_solution.endswith(f"\\boxed{{{p.answer}}}.") for p in drawn)


def test_pretrain_writes_a_model_every_stage_can_load(tmp_path, capsys):
    config = lab_config(tmp_path)
    assert main(["lab", "pretrain", config]) == 0
    folder = tmp_path / "run" / "lab-model"
    report = json.loads((folder / "pretrain_report.json").read_text())
    assert report["examples"] == 48 and report["steps"] == 3  # 48 rows / batch 16, one epoch
    assert report["last_loss"] < report["first_loss"]
    assert report["parameters"] > 0 and report["model"] == str(folder / "model")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(report["model"])
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(report["model"])
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == len(tokenizer)

    # The pretrained model is the run's policy: sampling runs on it unchanged.
    assert main(["sample", config]) == 0
    # A second pretrain call keeps the finished model.
    mtime = (folder / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["lab", "pretrain", config]) == 0
    assert (folder / "model" / "model.safetensors").stat().st_mtime_ns == mtime


def test_pretrain_refuses_a_family_without_a_generator(tmp_path, capsys):
    config = lab_config(tmp_path)
    data = tmp_path / "own.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": "1+1?", "answer": "2"}) + "\n")
    code = main(["lab", "pretrain", config, "--set", "data.train.kind=file", "--set", f"data.train.path={data}"])
    assert code == 2
    assert "data.train.kind is 'file'" in capsys.readouterr().err

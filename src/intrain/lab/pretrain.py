"""`intrain lab pretrain`: a small model trained from scratch on the arithmetic family.

The lab needs a policy that is partly competent on the family: right often enough that guided
continuations can succeed, wrong often enough that there are failed attempts to intervene on. The
embedded 135M model is slow on a CPU and almost never right; a few-million-parameter Qwen3 trained
for minutes on the family's reference solutions is both fast and partly right. It is an ordinary
HF folder (byte-level chat tokenizer, ChatML template), so the whole pipeline (sampling, no-EOS SFT,
GRPO, eval) runs on it unchanged, and at well under 64 MiB it travels to a GPU machine.

Pretraining is SFT from random weights on problem -> reference solution with the turn closed (the
model learns to stop), through the same `train_sft` as every other SFT in the project. Its problems
are drawn from `data.train`'s generator knobs with another seed, leaving out every problem of the
run's train and eval sets.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from intrain.config import Config, ConfigError, ModelConfig, SFTConfig
from intrain.data import Problem, load_problems
from intrain.lab.tiny_model import Shape, build_model, build_tokenizer
from intrain.progress import console
from intrain.store import atomic_write_json
from intrain.training.sft import sft_row, train_sft


def pretrain_problems(cfg: Config) -> list[Problem]:
    """`lab.pretrain.examples` problems of the train set's family, none of them in train or eval."""
    source, pcfg = cfg.data.train, cfg.lab.pretrain
    if source.kind != "arithmetic":
        raise ConfigError(
            f"lab pretrain: data.train.kind is {source.kind!r}; pretraining draws from the arithmetic family"
        )
    held = {p.problem for p in load_problems(source)[0]}
    if cfg.data.eval is not None:
        held |= {p.problem for p in load_problems(cfg.data.eval)[0]}
    # Draw a few more than asked, since the held-out ones are dropped.
    drawn, _ = load_problems(source.model_copy(update={"size": pcfg.examples + len(held), "seed": pcfg.seed}))
    return [p for p in drawn if p.problem not in held][: pcfg.examples]


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Build the tokenizer and random model, train, save `<output>/model`; return the report."""
    pcfg = cfg.lab.pretrain
    out = Path(pcfg.output) if pcfg.output else run_dir / "lab-model"
    report_path = out / "pretrain_report.json"
    if report_path.exists():
        report: dict[str, Any] = json.loads(report_path.read_text())
        console.print(f"lab pretrain: {out / 'model'} exists (report {report_path}); delete the folder to retrain")
        return report
    t0 = time.time()
    problems = pretrain_problems(cfg)
    corpus = [cfg.data.prompt_template] + [t for p in problems for t in (p.problem, p.reference_solution or "")]
    tokenizer = build_tokenizer(corpus, pcfg.vocab_size)
    shape = Shape(
        hidden_size=pcfg.hidden_size,
        num_layers=pcfg.num_layers,
        num_heads=pcfg.num_heads,
        num_kv_heads=pcfg.num_kv_heads,
        head_dim=pcfg.head_dim,
    )
    init = build_model(out / "init", tokenizer, shape, seed=pcfg.seed)
    rows = [
        sft_row(tokenizer, cfg.data.prompt_template, p.problem, p.reference_solution or "", close_turn=True)
        for p in problems
    ]
    sft = SFTConfig(
        learning_rate=pcfg.learning_rate,
        epochs=pcfg.epochs,
        effective_batch_size=pcfg.batch_size,
        per_device_batch_size=pcfg.batch_size,
        max_length=max(len(r["input_ids"]) for r in rows),
        warmup_ratio=0.05,
        min_lr_rate=0.1,
        weight_decay=0.01,
        seed=pcfg.seed,
        save_steps=10**6,  # minutes of work: a killed run starts over
    )
    model_cfg = ModelConfig(path=init, device=cfg.model.device, dtype="float32")
    result = train_sft(rows, model_cfg, sft, init, None, out)
    n_params = _count_parameters(Path(result["path"]))
    report = {
        "model": result["path"],
        "parameters": n_params,
        "shape": shape.__dict__,
        "vocab_size": len(tokenizer),
        "examples": len(rows),
        "tokens_per_example_mean": round(sum(len(r["input_ids"]) for r in rows) / len(rows), 1),
        "steps": result["steps"],
        "first_loss": result["first_loss"],
        "last_loss": result["last_loss"],
        "device": cfg.model.device,
        "wall_s": round(time.time() - t0, 1),
    }
    atomic_write_json(report_path, report)  # written last: it marks the model as whole
    console.print(f"lab pretrain: {report}")
    return report


def _count_parameters(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in model_dir.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118
    return total

"""Stage 4: SFT on problem -> (own prefix before the error + intervention) (paper §3.7–§3.8).

The prompt is masked, the prefix and the intervention are trained on, and no end-of-turn token
follows: the continuation that made the intervention pass the filter is deliberately not cloned.
"""

from __future__ import annotations

from typing import Any

from intrain.config import fingerprint
from intrain.models import load_tokenizer
from intrain.progress import console
from intrain.stages import filter as filter_stage
from intrain.stages.common import RunContext
from intrain.store import Stage, read_stage_rows, stage_hash
from intrain.training import sft_row, train_sft

NAME = "sft"


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    stage = Stage(ctx.run_dir, NAME,
                  fingerprint(stage_hash(ctx.run_dir, filter_stage.NAME), cfg.sft, cfg.model, cfg.data.prompt_template),
                  force=ctx.force)
    if stage.complete:
        return stage
    kept = [r for r in read_stage_rows(ctx.run_dir, filter_stage.NAME) if r["kept"]]
    if not stage.has_shard(0):
        tokenizer = load_tokenizer(cfg.model.path)
        stage.write_shard(0, build_dataset(kept, tokenizer, cfg.data.prompt_template, cfg.model.chat_template_kwargs))
    rows = stage.read_shard(0)
    usable = [r for r in rows if len(r["input_ids"]) <= cfg.sft.max_length]
    counts: dict[str, Any] = {"kept_interventions": len(kept), "sft_rows": len(usable),
                              "too_long": len(rows) - len(usable)}
    if not usable:
        console.print("[yellow]sft: no intervention survived the filter; nothing to train, the policy is unchanged")
        stage.finish(counts, model=None)
        return stage
    # Release the sampling engine first: a laptop holds one copy of the model at a time.
    ctx.release_generators()
    result = train_sft([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in usable], cfg.model, cfg.sft,
                       cfg.model.path, cfg.model.adapter, stage.path)
    counts.update(steps=result["steps"], first_loss=result["first_loss"], last_loss=result["last_loss"])
    stage.finish(counts, model=result["path"])
    console.print(f"sft: {counts}")
    return stage


def build_dataset(kept: list[dict[str, Any]], tokenizer, prompt_template: str,
                  chat_template_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in kept:
        row = sft_row(tokenizer, prompt_template, r["problem"], r["guided_prefix"], chat_template_kwargs)
        rows.append({"problem_id": r["problem_id"], "attempt_id": r["attempt_id"], "prompt": r["problem"],
                     "target": r["guided_prefix"], **row})
    return rows


def trained_model(stage: Stage) -> str | None:
    """The checkpoint an SFT stage produced, or None when it had nothing to train on."""
    return (stage.manifest() or {}).get("model")

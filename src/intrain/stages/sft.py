"""Stage 4: SFT on problem -> (own prefix before the error + intervention) (paper §3.7–§3.8).

The prompt is masked, the prefix and the intervention are trained on, and no end-of-turn token
follows: the continuation that made the intervention pass the filter is deliberately not cloned.
`train_stage` is shared with the baselines that clone whole solutions (`intrain compare`).
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
    kept = [r for r in read_stage_rows(ctx.run_dir, filter_stage.NAME) if r["kept"]]
    examples = [{"problem_id": r["problem_id"], "problem": r["problem"], "target": r["guided_prefix"]} for r in kept]
    return train_stage(ctx, NAME, stage_hash(ctx.run_dir, filter_stage.NAME), examples, close_turn=False)


def train_stage(ctx: RunContext, label: str, upstream_hash: str | None, examples: list[dict[str, Any]],
                close_turn: bool) -> Stage:
    """SFT the configured policy on problem -> target examples into the stage folder `label`."""
    cfg = ctx.config
    stage = Stage(ctx.run_dir, label,
                  fingerprint(upstream_hash, cfg.sft, cfg.model, cfg.data.prompt_template, {"close_turn": close_turn}),
                  force=ctx.force)
    if stage.complete:
        return stage
    if not stage.has_shard(0):
        tokenizer = load_tokenizer(cfg.model.path)
        rows = [{**ex, **sft_row(tokenizer, cfg.data.prompt_template, ex["problem"], ex["target"], close_turn,
                                 cfg.model.chat_template_kwargs)} for ex in examples]
        stage.write_shard(0, rows)
    rows = stage.read_shard(0)
    usable = [r for r in rows if len(r["input_ids"]) <= cfg.sft.max_length]
    counts: dict[str, Any] = {"examples": len(examples), "sft_rows": len(usable), "too_long": len(rows) - len(usable)}
    if not usable:
        console.print(f"[yellow]{label}: no training rows; nothing to train, the policy is unchanged")
        stage.finish(counts, model=None)
        return stage
    # Release the sampling engine first: a laptop holds one copy of the model at a time.
    ctx.release_generators()
    result = train_sft([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in usable], cfg.model, cfg.sft,
                       cfg.model.path, cfg.model.adapter, stage.path)
    counts.update(steps=result["steps"], first_loss=result["first_loss"], last_loss=result["last_loss"])
    stage.finish(counts, model=result["path"])
    console.print(f"{label}: {counts}")
    return stage


def trained_model(stage: Stage) -> str | None:
    """The checkpoint an SFT stage produced, or None when it had nothing to train on."""
    return (stage.manifest() or {}).get("model")

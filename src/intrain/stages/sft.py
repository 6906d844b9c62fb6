"""Stage 4: SFT on problem -> (own prefix before the error + intervention) (paper §3.7–§3.8).

The prompt is masked, the prefix and the intervention are trained on, and no end-of-turn token
follows: the continuation that made the intervention pass the filter is deliberately not cloned.
`train_stage` is shared with the baselines that clone whole solutions (`intrain compare`).
`sft.max_rows` caps the InT rows (not the baselines'), covering as many problems as it can.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from intrain import fingerprints
from intrain.fingerprints import StageInputs
from intrain.models import load_tokenizer
from intrain.progress import console
from intrain.records import FilterResult, SFTExample
from intrain.stages import filter as filter_stage
from intrain.stages.common import RunContext
from intrain.store import Stage, read_stage_records
from intrain.training.args import is_main_process
from intrain.training.checkpoints import prune_checkpoints
from intrain.training.sft import sft_row, train_sft

NAME = "sft"


class _HasProblemId(Protocol):
    @property
    def problem_id(self) -> str: ...


T = TypeVar("T", bound=_HasProblemId)


@dataclass(frozen=True)
class Target:
    """problem -> text to clone."""

    problem_id: str
    problem: str
    text: str


def run(ctx: RunContext) -> Stage:
    kept = [r for r in read_stage_records(ctx.run_dir, filter_stage.NAME, FilterResult) if r.kept]
    if ctx.config.sft.max_rows is not None and len(kept) > ctx.config.sft.max_rows:
        chosen = subsample_rows(kept, ctx.config.sft.max_rows, ctx.config.sft.seed)
        console.print(
            f"{NAME}: sft.max_rows={ctx.config.sft.max_rows}: {len(chosen)} of {len(kept)} kept rows, "
            f"{len({r.problem_id for r in chosen})} of {len({r.problem_id for r in kept})} problems"
        )
        kept = chosen
    targets = int_targets(kept, ctx.config.sft.target)
    close_turn = ctx.config.sft.target == "prefix_intervention_suffix"
    return train_stage(ctx, NAME, fingerprints.SFT, targets, close_turn=close_turn)


def int_targets(kept: Sequence[FilterResult], target: str) -> list[Target]:
    """What each kept row clones (`sft.target`, the paper's Table 2): InT's own prefix + intervention,
    the intervention alone, or prefix + intervention + the correct continuation the filter sampled
    (rows without one, e.g. with the filter off, are dropped)."""
    if target == "prefix_intervention":
        return [Target(r.problem_id, r.problem, r.guided_prefix or "") for r in kept]
    if target == "intervention":
        return [Target(r.problem_id, r.problem, r.content or "") for r in kept]
    with_suffix = [r for r in kept if r.example_continuation]
    if len(with_suffix) < len(kept):
        console.print(
            f"{NAME}: sft.target=prefix_intervention_suffix: {len(kept) - len(with_suffix)} of {len(kept)} kept "
            "rows have no correct continuation to clone (filter off or none correct) and are dropped"
        )
    return [
        Target(r.problem_id, r.problem, (r.guided_prefix or "") + (r.example_continuation or "")) for r in with_suffix
    ]


def subsample_rows(rows: Sequence[T], max_rows: int, seed: int) -> list[T]:
    """At most `max_rows` of `rows` (objects with a `problem_id`), in their original order: one row of
    every problem first, then a second of every problem that has one, and so on. Problems are visited in
    a `seed`-shuffled order and each problem's rows are shuffled by `seed` too, so the choice depends on
    the seed and on the rows, not on the order of problems in the input."""
    rng = random.Random(seed)
    by_problem: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_problem.setdefault(row.problem_id, []).append(index)
    problems = sorted(by_problem)
    rng.shuffle(problems)
    for problem in problems:
        rng.shuffle(by_problem[problem])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(max_rows, len(rows)):
        for problem in problems:
            if depth < len(by_problem[problem]) and len(chosen) < max_rows:
                chosen.append(by_problem[problem][depth])
        depth += 1
    return [rows[i] for i in sorted(chosen)]


def train_stage(ctx: RunContext, label: str, inputs: StageInputs, targets: list[Target], close_turn: bool) -> Stage:
    """SFT the configured policy on problem -> target into the stage folder `label`; `inputs` declares
    what the targets were made from (InT: the filter stage; baselines: their own sources)."""
    cfg = ctx.config
    stage = ctx.open_stage(label, inputs, close_turn=close_turn)
    if stage.complete:
        # A run killed between finishing and pruning left its checkpoints (~50 GB each for 4B): prune now.
        if is_main_process():
            prune_checkpoints(stage.path / "checkpoints", cfg.output.keep_checkpoints)
        return stage
    if not stage.has_shard(0):
        tokenizer = load_tokenizer(cfg.model.path)
        examples = [
            SFTExample(
                problem_id=t.problem_id,
                problem=t.problem,
                target=t.text,
                **sft_row(
                    tokenizer, cfg.data.prompt_template, t.problem, t.text, close_turn, cfg.model.chat_template_kwargs
                ),
            )
            for t in targets
        ]
        stage.write_records(0, examples, SFTExample)
    rows = stage.records(SFTExample)
    usable = [r for r in rows if len(r.input_ids) <= cfg.sft.max_length]
    counts: dict[str, Any] = {"examples": len(rows), "sft_rows": len(usable), "too_long": len(rows) - len(usable)}
    if not usable:
        console.print(f"[yellow]{label}: no training rows; nothing to train, the policy is unchanged")
        stage.finish(counts, model=None)
        return stage
    # Release the sampling engine first: a laptop holds one copy of the model at a time.
    ctx.release_generators()
    result = train_sft(
        [{"input_ids": r.input_ids, "labels": r.labels} for r in usable],
        cfg.model,
        cfg.sft,
        cfg.model.path,
        cfg.model.adapter,
        stage.path,
        keep_checkpoints=cfg.output.keep_checkpoints,
        train_adapter=cfg.model.train_adapter,
    )
    counts.update(steps=result["steps"], first_loss=result["first_loss"], last_loss=result["last_loss"])
    if is_main_process():  # under `accelerate launch` every rank gets here; one writes
        stage.finish(counts, model=result["path"])
        prune_checkpoints(stage.path / "checkpoints", cfg.output.keep_checkpoints)
    console.print(f"{label}: {counts}")
    return stage


def trained_model(stage: Stage) -> str | None:
    """The checkpoint an SFT stage produced, or None when it had nothing to train on."""
    return (stage.manifest() or {}).get("model")

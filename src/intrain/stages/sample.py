"""Stage 1: K graded on-policy rollouts per training problem (paper §3.2: K=4, 0.7/0.8/20)."""

from __future__ import annotations

from intrain import fingerprints
from intrain.records import Rollout
from intrain.stages.common import RunContext
from intrain.stages.rollouts import write_rollouts
from intrain.store import Stage

NAME = "sample"


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    stage = ctx.open_stage(NAME, fingerprints.SAMPLE)
    if stage.complete:
        return stage
    problems = ctx.problems("train")
    timings = write_rollouts(ctx, stage, problems, cfg.sample, "sample")
    rollouts = stage.records(Rollout)
    stage.finish(
        {
            "problems": len(problems),
            "rollouts": len(rollouts),
            "correct": sum(r.correct for r in rollouts),
            "failed": sum(not r.correct for r in rollouts),
            "truncated": sum(r.finish_reason == "length" for r in rollouts),
        },
        timings,
    )
    return stage

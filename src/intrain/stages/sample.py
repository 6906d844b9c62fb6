"""Stage 1: K graded on-policy rollouts per training problem (paper §3.2: K=4, 0.7/0.8/20)."""

from __future__ import annotations

from intrain.config import fingerprint
from intrain.stages.common import RunContext
from intrain.stages.rollouts import write_rollouts
from intrain.store import Stage

NAME = "sample"


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    stage = Stage(ctx.run_dir, NAME, fingerprint(cfg.model, cfg.data.train, cfg.data.prompt_template, cfg.sample),
                  force=ctx.force)
    if stage.complete:
        return stage
    problems = ctx.problems("train")
    timings = write_rollouts(stage, problems, cfg.data.prompt_template, cfg.sample, ctx.generator(cfg.model),
                             ctx.grader, "sample")
    rows = stage.rows()
    stage.finish({
        "problems": len(problems), "rollouts": len(rows),
        "correct": sum(r["correct"] for r in rows), "failed": sum(not r["correct"] for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
    }, timings)
    return stage

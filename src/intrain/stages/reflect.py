"""Baseline data: self-reflections (paper §6, "SFT on self-reflections + RL").

The policy sees a failed attempt together with the reference solution and rewrites a whole
corrected solution. Reflections are graded; the correct ones become SFT targets (whole solutions,
turn closed), in contrast to InT's prefix + one step.
"""

from __future__ import annotations

from intrain import fingerprints
from intrain.engines.base import Request
from intrain.progress import console
from intrain.prompts import render_reflection
from intrain.records import Reflection, Rollout
from intrain.stages import propose, sample
from intrain.stages.common import RunContext, ShardReport, chunks, generate_graded, run_shards, sampling_params
from intrain.store import Stage, read_stage_records

NAME = "reflect"


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    stage = ctx.open_stage(NAME, fingerprints.REFLECT)
    if stage.complete:
        return stage
    attempts = propose.failed_attempts(read_stage_records(ctx.run_dir, sample.NAME, Rollout), cfg.propose.max_attempts)
    shards = chunks(attempts, cfg.propose.shard_size)
    run_shards(ctx, stage, shards, reflect_shard, Reflection, "reflect", ray=cfg.model.ray)
    reflections = stage.records(Reflection)
    counts = {
        "failed_attempts": len(attempts),
        "reflections": len(reflections),
        "correct": sum(r.correct for r in reflections),
    }
    stage.finish(counts)
    console.print(f"reflect: {counts}")
    return stage


def reflect_shard(ctx: RunContext, index: int, attempts: list[Rollout], report: ShardReport) -> list[Reflection]:
    """One shard's graded reflections (a `ShardWork`)."""
    cfg = ctx.config
    prompts = [render_reflection(a.problem, a.reference_solution, a.completion) for a in attempts]
    requests = [Request(messages=[{"role": "user", "content": prompt}]) for prompt in prompts]
    params = sampling_params(cfg.propose, index, max_tokens=cfg.sample.max_tokens)
    graded = generate_graded(
        ctx.generator(cfg.model), ctx.grader, requests, [a.answer for a in attempts], params, on_progress=report.advance
    )
    return [
        Reflection(
            problem_id=a.problem_id,
            attempt_id=a.attempt_id,
            problem=a.problem,
            answer=a.answer,
            reflection=g.completion.text,
            correct=g.verdict.correct,
            reason=g.verdict.reason,
        )
        for a, (g,) in zip(attempts, graded)
    ]

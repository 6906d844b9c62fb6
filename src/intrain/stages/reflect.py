"""Baseline data: self-reflections (paper §6, "SFT on self-reflections + RL").

The policy sees a failed attempt together with the reference solution and rewrites a whole
corrected solution. Reflections are graded; the correct ones become SFT targets (whole solutions,
turn closed), in contrast to InT's prefix + one step.
"""

from __future__ import annotations

from intrain import fingerprints
from intrain.engines.base import Request
from intrain.progress import StageProgress, console
from intrain.prompts import render_reflection
from intrain.records import Reflection, Rollout
from intrain.stages import propose, sample
from intrain.stages.common import RunContext, chunks, generate_graded, sampling_params
from intrain.store import Stage, read_stage_records

NAME = "reflect"


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    stage = ctx.open_stage(NAME, fingerprints.REFLECT)
    if stage.complete:
        return stage
    attempts = propose.failed_attempts(read_stage_records(ctx.run_dir, sample.NAME, Rollout), cfg.propose.max_attempts)
    generator = ctx.generator(cfg.model)
    with StageProgress("reflect", total=len(attempts)) as progress:
        for index, shard in enumerate(chunks(attempts, cfg.propose.shard_size)):
            if stage.has_shard(index):
                progress.advance(len(shard))
                continue
            requests = [
                Request(
                    messages=[
                        {"role": "user", "content": render_reflection(a.problem, a.reference_solution, a.completion)}
                    ]
                )
                for a in shard
            ]
            params = sampling_params(cfg.propose, index, max_tokens=cfg.sample.max_tokens)
            graded = generate_graded(
                generator, ctx.grader, requests, [a.answer for a in shard], params, on_progress=progress.advance
            )
            reflections = [
                Reflection(
                    problem_id=a.problem_id,
                    attempt_id=a.attempt_id,
                    problem=a.problem,
                    answer=a.answer,
                    reflection=g.completion.text,
                    correct=g.verdict.correct,
                    reason=g.verdict.reason,
                )
                for a, (g,) in zip(shard, graded)
            ]
            stage.write_records(index, reflections, Reflection)
    reflections = stage.records(Reflection)
    counts = {
        "failed_attempts": len(attempts),
        "reflections": len(reflections),
        "correct": sum(r.correct for r in reflections),
    }
    stage.finish(counts)
    console.print(f"reflect: {counts}")
    return stage

"""Graded on-policy rollouts, shard by shard. Shared by the `sample` and `eval` stages."""

from __future__ import annotations

from functools import partial

from intrain.config import SamplingConfig
from intrain.data import Problem
from intrain.engines.base import Request
from intrain.records import Rollout
from intrain.stages.common import (
    RunContext,
    ShardReport,
    chunks,
    generate_graded,
    run_shards,
    sampling_params,
    user_message,
)
from intrain.store import Stage


def write_rollouts(
    ctx: RunContext,
    stage: Stage,
    problems: list[Problem],
    sampling: SamplingConfig,
    description: str,
    model_path: str | None = None,
    adapter: str | None = None,
) -> dict[str, float]:
    """Sample `sampling.n` graded completions per problem into `stage` from the policy, or from checkpoint
    `model_path` (+ `adapter`); finished shards are skipped."""
    work = partial(rollout_shard, sampling=sampling, model_path=model_path, adapter=adapter)
    shards = chunks(problems, sampling.shard_size)
    return run_shards(
        ctx, stage, shards, work, Rollout, description, units_per_item=sampling.n, ray=ctx.config.model.ray
    )


def rollout_shard(
    ctx: RunContext,
    index: int,
    problems: list[Problem],
    report: ShardReport,
    sampling: SamplingConfig,
    model_path: str | None = None,
    adapter: str | None = None,
) -> list[Rollout]:
    """One shard's rollouts (a `ShardWork`)."""
    cfg = ctx.config
    requests = [Request(messages=user_message(cfg.data.prompt_template, p.problem), n=sampling.n) for p in problems]
    graded = generate_graded(
        ctx.generator(cfg.model, model_path, adapter),
        ctx.grader,
        requests,
        [p.answer for p in problems],
        sampling_params(sampling, index),
        on_progress=report.advance,
        timings=report.timings,
    )
    return [
        Rollout(
            problem_id=p.id,
            source=p.source,
            problem=p.problem,
            answer=p.answer,
            reference_solution=p.reference_solution,
            sample_index=i,
            completion=g.completion.text,
            completion_tokens=len(g.completion.token_ids),
            prompt_tokens=g.completion.prompt_tokens,
            finish_reason=g.completion.finish_reason,
            correct=g.verdict.correct,
            reason=g.verdict.reason,
            extracted=g.verdict.extracted,
        )
        for p, samples in zip(problems, graded)
        for i, g in enumerate(samples)
    ]

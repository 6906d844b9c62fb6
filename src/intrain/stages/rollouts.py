"""Graded on-policy rollouts, shard by shard. Shared by the `sample` and `eval` stages."""

from __future__ import annotations

from intrain.config import SamplingConfig
from intrain.data import Problem
from intrain.engines.base import Generator, Request
from intrain.grading import Grader
from intrain.progress import StageProgress
from intrain.records import Rollout
from intrain.stages.common import chunks, generate_graded, sampling_params, user_message
from intrain.store import Stage


def write_rollouts(
    stage: Stage,
    problems: list[Problem],
    prompt_template: str,
    sampling: SamplingConfig,
    generator: Generator,
    grader: Grader,
    description: str,
) -> dict[str, float]:
    """Sample `sampling.n` graded completions per problem into `stage`; finished shards are skipped."""
    timings: dict[str, float] = {"generate_s": 0.0, "grade_s": 0.0}
    with StageProgress(description, total=len(problems) * sampling.n) as progress:
        for index, shard in enumerate(chunks(problems, sampling.shard_size)):
            if stage.has_shard(index):
                progress.advance(len(shard) * sampling.n)
                continue
            requests = [Request(messages=user_message(prompt_template, p.problem), n=sampling.n) for p in shard]
            graded = generate_graded(
                generator,
                grader,
                requests,
                [p.answer for p in shard],
                sampling_params(sampling, index),
                on_progress=progress.advance,
                timings=timings,
            )
            rollouts = [
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
                for p, samples in zip(shard, graded)
                for i, g in enumerate(samples)
            ]
            stage.write_records(index, rollouts, Rollout)
        timings["tokens"] = progress.tokens
    return {k: round(v, 2) for k, v in timings.items()}

"""Graded on-policy rollouts, shard by shard. Shared by the `sample` and `eval` stages."""

from __future__ import annotations

import time
from typing import Any

from intrain.config import SamplingConfig
from intrain.data import Problem
from intrain.engines.base import Generator, Request
from intrain.grading import Grader
from intrain.progress import StageProgress
from intrain.stages.common import chunks, sampling_params, user_message
from intrain.store import Stage


def write_rollouts(stage: Stage, problems: list[Problem], prompt_template: str, sampling: SamplingConfig,
                   generator: Generator, grader: Grader, description: str) -> dict[str, float]:
    """Sample `sampling.n` graded completions per problem into `stage`; finished shards are skipped."""
    shards = chunks(problems, sampling.shard_size)
    timings = {"generate_s": 0.0, "grade_s": 0.0}
    with StageProgress(description, total=len(problems) * sampling.n) as progress:
        for index, shard in enumerate(shards):
            if stage.has_shard(index):
                progress.advance(len(shard) * sampling.n)
                continue
            requests = [Request(messages=user_message(prompt_template, p.problem), n=sampling.n) for p in shard]
            t0 = time.time()
            outputs = generator.generate(requests, sampling_params(sampling, index), on_progress=progress.advance)
            t1 = time.time()
            texts = [c.text for completions in outputs for c in completions]
            golds = [p.answer for p, completions in zip(shard, outputs) for _ in completions]
            verdicts = grader.grade(texts, golds)
            timings["generate_s"] += t1 - t0
            timings["grade_s"] += time.time() - t1
            rows: list[dict[str, Any]] = []
            flat = iter(verdicts)
            for problem, completions in zip(shard, outputs):
                for sample_index, completion in enumerate(completions):
                    verdict = next(flat)
                    rows.append({
                        "problem_id": problem.id, "source": problem.source, "problem": problem.problem,
                        "answer": problem.answer, "reference_solution": problem.reference_solution,
                        "sample_index": sample_index, "completion": completion.text,
                        "completion_tokens": len(completion.token_ids), "prompt_tokens": completion.prompt_tokens,
                        "finish_reason": completion.finish_reason, "correct": verdict.correct,
                        "reason": verdict.reason, "extracted": verdict.extracted,
                    })
            stage.write_shard(index, rows)
        timings["tokens"] = progress.tokens
    return {k: round(v, 2) for k, v in timings.items()}

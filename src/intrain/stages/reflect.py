"""Baseline data: self-reflections (paper §6, "SFT on self-reflections + RL").

The policy sees a failed attempt together with the reference solution and rewrites a whole
corrected solution. Reflections are graded; the correct ones become SFT targets (whole solutions,
turn closed), in contrast to InT's prefix + one step.
"""

from __future__ import annotations

from typing import Any

from intrain.config import fingerprint
from intrain.engines.base import Request
from intrain.progress import StageProgress, console
from intrain.prompts import render_reflection
from intrain.stages import propose, sample
from intrain.stages.common import RunContext, chunks, sampling_params
from intrain.store import Stage, read_stage_rows, stage_hash

NAME = "reflect"


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    stage = Stage(ctx.run_dir, NAME,
                  fingerprint(stage_hash(ctx.run_dir, sample.NAME), cfg.propose, cfg.sample.max_tokens, cfg.model),
                  force=ctx.force)
    if stage.complete:
        return stage
    attempts = propose.failed_attempts(read_stage_rows(ctx.run_dir, sample.NAME), cfg.propose.max_attempts)
    generator = ctx.generator(cfg.model)
    with StageProgress("reflect", total=len(attempts)) as progress:
        for index, shard in enumerate(chunks(attempts, cfg.propose.shard_size)):
            if stage.has_shard(index):
                progress.advance(len(shard))
                continue
            requests = [Request(messages=[{"role": "user", "content": render_reflection(
                a["problem"], a["reference_solution"], a["completion"])}]) for a in shard]
            params = sampling_params(cfg.propose, index, max_tokens=cfg.sample.max_tokens)
            outputs = generator.generate(requests, params, on_progress=progress.advance)
            texts = [out[0].text for out in outputs]
            verdicts = ctx.grader.grade(texts, [a["answer"] for a in shard])
            rows: list[dict[str, Any]] = [
                {"problem_id": a["problem_id"], "attempt_id": f"{a['problem_id']}#{a['sample_index']}",
                 "problem": a["problem"], "answer": a["answer"], "reflection": text, "correct": v.correct,
                 "reason": v.reason}
                for a, text, v in zip(shard, texts, verdicts)
            ]
            stage.write_shard(index, rows)
    rows = stage.rows()
    counts = {"failed_attempts": len(attempts), "reflections": len(rows), "correct": sum(r["correct"] for r in rows)}
    stage.finish(counts)
    console.print(f"reflect: {counts}")
    return stage

"""Stage 3: keep interventions that lead somewhere (paper §3.6).

Each `ok` proposal's guided prefix (own prefix + intervention) is continued as the open assistant turn
of the problem's chat; it is kept when at least `min_correct` of `n` continuations are correct.
Continuations are drawn in waves and a row stops as soon as its decision is fixed, which saves most
of the 32 samples per row the paper draws. With `diagnose`, every row gets all `n` samples, from the
intervention and from the original erroneous step, for the paper's Table 1 comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intrain.config import FilterConfig, fingerprint
from intrain.engines.base import Generator, Request
from intrain.grading import Grader
from intrain.progress import StageProgress, console
from intrain.stages import propose
from intrain.stages.common import RunContext, chunks, sampling_params, shard_seed, user_message
from intrain.store import Stage, read_stage_rows, stage_hash

NAME = "filter"


@dataclass
class ContinuationCounts:
    sampled: int = 0
    correct: int = 0
    example: str | None = None  # one correct continuation, for inspection


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    fcfg = cfg.filter
    stage = Stage(ctx.run_dir, NAME,
                  fingerprint(stage_hash(ctx.run_dir, propose.NAME), fcfg, cfg.model, cfg.data.prompt_template),
                  force=ctx.force)
    if stage.complete:
        return stage
    candidates = [r for r in read_stage_rows(ctx.run_dir, propose.NAME) if r["status"] == "ok"]
    generator = ctx.generator(cfg.model) if fcfg.enabled else None
    with StageProgress("filter", total=len(candidates)) as progress:
        for index, shard in enumerate(chunks(candidates, fcfg.shard_size)):
            if not stage.has_shard(index):
                stage.write_shard(index, filter_shard(shard, generator, ctx.grader, fcfg, cfg.data.prompt_template, index))
            progress.advance(len(shard))
    rows = stage.rows()
    counts = {"candidates": len(candidates), "kept": sum(r["kept"] for r in rows),
              "continuations": sum(r["continuations"] for r in rows),
              "continuations_correct": sum(r["continuations_correct"] for r in rows),
              "problems_covered": len({r["problem_id"] for r in rows if r["kept"]})}
    if fcfg.diagnose and rows:
        counts.update(diagnose_summary(rows))
    stage.finish(counts)
    console.print(f"filter: {counts}")
    return stage


def filter_shard(rows: list[dict[str, Any]], generator: Generator | None, grader: Grader, fcfg: FilterConfig,
                 prompt_template: str, shard: int) -> list[dict[str, Any]]:
    if not fcfg.enabled:
        return [{**r, "continuations": 0, "continuations_correct": 0, "kept": True, "example_continuation": None}
                for r in rows]
    guided = continue_prefixes(generator, grader, rows, "guided_prefix", fcfg, prompt_template, shard,
                               early_stop=not fcfg.diagnose)
    out = []
    for row, counts in zip(rows, guided):
        out.append({**row, "continuations": counts.sampled, "continuations_correct": counts.correct,
                    "kept": counts.correct >= fcfg.min_correct, "example_continuation": counts.example})
    if fcfg.diagnose:
        original = continue_prefixes(generator, grader, rows, "original_step_prefix", fcfg, prompt_template,
                                     shard + 1_000_000, early_stop=False)
        for row, counts in zip(out, original):
            row.update(original_continuations=counts.sampled, original_correct=counts.correct)
    return out


def continue_prefixes(generator: Generator, grader: Grader, rows: list[dict[str, Any]], prefix_key: str,
                      fcfg: FilterConfig, prompt_template: str, shard: int, early_stop: bool) -> list[ContinuationCounts]:
    """Continue each row's prefix up to `fcfg.n` times, in waves of `fcfg.wave_size`."""
    counts = [ContinuationCounts() for _ in rows]

    def open_rows() -> list[int]:
        todo = []
        for i, c in enumerate(counts):
            remaining = fcfg.n - c.sampled
            decided = c.correct >= fcfg.min_correct or c.correct + remaining < fcfg.min_correct
            if remaining > 0 and not (early_stop and decided):
                todo.append(i)
        return todo

    wave = 0
    while todo := open_rows():
        requests = [
            Request(messages=[*user_message(prompt_template, rows[i]["problem"]),
                              {"role": "assistant", "content": rows[i][prefix_key]}],
                    continue_final=True, n=min(fcfg.wave_size, fcfg.n - counts[i].sampled))
            for i in todo
        ]
        params = sampling_params(fcfg, shard, seed=shard_seed(fcfg.seed + wave, shard))
        outputs = generator.generate(requests, params)
        texts = [c.text for out in outputs for c in out]
        golds = [rows[i]["answer"] for i, out in zip(todo, outputs) for _ in out]
        verdicts = iter(grader.grade(texts, golds))
        for i, out in zip(todo, outputs):
            for completion in out:
                verdict = next(verdicts)
                counts[i].sampled += 1
                if verdict.correct:
                    counts[i].correct += 1
                    counts[i].example = counts[i].example or completion.text
        wave += 1
    return counts


def diagnose_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Coverage and mean accuracy from intervention vs original step (paper Table 1's comparison)."""
    problems = {r["problem_id"] for r in rows}

    def stats(sampled_key: str, correct_key: str) -> tuple[int, float]:
        covered = len({r["problem_id"] for r in rows if r[correct_key] > 0})
        accuracy = sum(r[correct_key] for r in rows) / max(1, sum(r[sampled_key] for r in rows))
        return covered, accuracy

    cov_i, acc_i = stats("continuations", "continuations_correct")
    cov_o, acc_o = stats("original_continuations", "original_correct")
    return {"diagnose_problems": len(problems), "intervention_coverage": cov_i, "intervention_accuracy": acc_i,
            "original_step_coverage": cov_o, "original_step_accuracy": acc_o}

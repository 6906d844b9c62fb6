"""Stage 3: keep interventions that lead somewhere (paper §3.6).

Each `ok` proposal's guided prefix (own prefix + intervention) is continued as the open assistant turn
of the problem's chat; it is kept when at least `min_correct` of `n` continuations are correct.
Continuations are drawn in waves and a row stops as soon as its decision is fixed, which saves most
of the 32 samples per row the paper draws. With `diagnose`, every row gets all `n` samples, from the
intervention and from the original erroneous step, for the paper's Table 1 comparison.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from intrain import fingerprints
from intrain.config import FilterConfig
from intrain.engines.base import Generator, ProgressFn, Request, derive_seed
from intrain.grading import Grader
from intrain.progress import console
from intrain.records import FilterResult, Proposal
from intrain.stages import propose
from intrain.stages.common import (
    RunContext,
    ShardReport,
    chunks,
    generate_graded,
    run_shards,
    sampling_params,
    shard_seed,
    user_message,
)
from intrain.store import Stage, read_stage_records
from intrain.truth.arithmetic import first_error

NAME = "filter"


@dataclass(frozen=True)
class Continuation:
    """A prefix to continue as the open assistant turn of a problem's chat, graded against `answer`."""

    problem: str
    answer: str
    prefix: str


@dataclass
class ContinuationCounts:
    sampled: int = 0
    correct: int = 0
    example: str | None = None  # one correct continuation, for inspection
    verdicts: list[bool] = field(default_factory=list)  # in sampling order


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    fcfg = cfg.filter
    stage = ctx.open_stage(NAME, fingerprints.FILTER)
    if stage.complete:
        return stage
    candidates = [p for p in read_stage_records(ctx.run_dir, propose.NAME, Proposal) if p.status == "ok"]
    if fcfg.verify:
        propose.check_ground_truth(candidates, "filter.verify")
    shards = chunks(candidates, fcfg.shard_size)
    ray = cfg.model.ray if fcfg.enabled else None  # a disabled filter copies rows: no engine, no actors
    # The bar counts candidates decided, once per prefix continued (diagnose continues two per candidate).
    units = 2 if fcfg.enabled and fcfg.diagnose else 1
    timings = run_shards(ctx, stage, shards, filter_work, FilterResult, "filter", units_per_item=units, ray=ray)
    results = stage.records(FilterResult)
    counts: dict[str, Any] = {
        "candidates": len(candidates),
        "kept": sum(r.kept for r in results),
        "continuations": sum(r.continuations for r in results),
        "continuations_correct": sum(r.continuations_correct for r in results),
        "problems_covered": len({r.problem_id for r in results if r.kept}),
    }
    if fcfg.diagnose and results:
        counts.update(diagnose_summary(results))
    if fcfg.verify:
        counts["error_free"] = sum(bool(r.error_free) for r in results)
    stage.finish(counts, timings)
    console.print(f"filter: {counts}")
    return stage


def filter_work(ctx: RunContext, index: int, proposals: list[Proposal], report: ShardReport) -> list[FilterResult]:
    """One shard of the filter (a `ShardWork`); with the filter off, no engine or grading pool is built."""
    cfg = ctx.config
    if not cfg.filter.enabled:
        return filter_shard(proposals, None, None, cfg.filter, cfg.data.prompt_template, index)
    generator = ctx.generator(cfg.model)
    return filter_shard(proposals, generator, ctx.grader, cfg.filter, cfg.data.prompt_template, index, report.advance)


def filter_shard(
    proposals: list[Proposal],
    generator: Generator | None,
    grader: Grader | None,
    fcfg: FilterConfig,
    prompt_template: str,
    shard: int,
    on_progress: ProgressFn | None = None,
) -> list[FilterResult]:
    """Each proposal's continuation counts and verdict. `on_progress(rows_decided, tokens_generated)` is
    called as waves finish (once per prefix continued: twice per row with `diagnose`)."""

    def result(p: Proposal, **fields: Any) -> FilterResult:
        return FilterResult(**{f.name: getattr(p, f.name) for f in dataclasses.fields(Proposal)}, **fields)

    if generator is None or grader is None:  # the filter is disabled: every candidate is kept
        return [result(p, kept=True) for p in proposals]
    guided = continue_prefixes(
        generator,
        grader,
        [Continuation(p.problem, p.answer, p.guided_prefix or "") for p in proposals],
        fcfg,
        prompt_template,
        shard,
        early_stop=not fcfg.diagnose,
        on_progress=on_progress,
    )
    original: list[ContinuationCounts | None] = [None] * len(proposals)
    if fcfg.diagnose:
        original = list(
            continue_prefixes(
                generator,
                grader,
                [Continuation(p.problem, p.answer, p.original_step_prefix or "") for p in proposals],
                fcfg,
                prompt_template,
                shard + 1_000_000,
                early_stop=False,
                on_progress=on_progress,
            )
        )
    error_free: list[bool | None] = [None] * len(proposals)
    if fcfg.verify:
        error_free = [guided_prefix_is_error_free(p) for p in proposals]
    return [
        result(
            p,
            continuations=g.sampled,
            continuations_correct=g.correct,
            kept=g.correct >= fcfg.min_correct and e is not False,
            error_free=e,
            example_continuation=g.example,
            original_continuations=o.sampled if o else None,
            original_correct=o.correct if o else None,
        )
        for p, g, o, e in zip(proposals, guided, original, error_free)
    ]


def guided_prefix_is_error_free(p: Proposal) -> bool:
    """The family's ground truth finds no error in the attempt's prefix + the intervention."""
    problem = p.as_problem()
    return first_error(problem, p.guided_prefix or "").location is None


def continue_prefixes(
    generator: Generator,
    grader: Grader,
    items: list[Continuation],
    fcfg: FilterConfig,
    prompt_template: str,
    shard: int,
    early_stop: bool,
    on_progress: ProgressFn | None = None,
) -> list[ContinuationCounts]:
    """Continue each item's prefix up to `fcfg.n` times, in waves of `fcfg.wave_size`; with `early_stop`,
    an item stops once `fcfg.min_correct` is reached or out of reach. `on_progress` (if given) gets the
    tokens of each generated batch and, after each wave, the items that finished in it.

    Item i's k-th continuation is drawn with seed `derive_seed(shard seed, i) + k` whichever wave it
    falls in (`Request.seed`), so waves and early stopping decide how many continuations are drawn,
    never what they are: an item's verdict is the one all `n` at once would give."""
    counts = [ContinuationCounts() for _ in items]
    finished = 0

    def report(sequences: int, tokens: int) -> None:
        if on_progress is not None:
            on_progress(sequences, tokens)

    def open_rows() -> list[int]:
        todo = []
        for i, c in enumerate(counts):
            remaining = fcfg.n - c.sampled
            decided = c.correct >= fcfg.min_correct or c.correct + remaining < fcfg.min_correct
            if remaining > 0 and not (early_stop and decided):
                todo.append(i)
        return todo

    base_seed = shard_seed(fcfg.seed, shard)
    while todo := open_rows():
        report(len(items) - len(todo) - finished, 0)
        finished = len(items) - len(todo)
        requests = [
            Request(
                messages=[
                    *user_message(prompt_template, items[i].problem),
                    {"role": "assistant", "content": items[i].prefix},
                ],
                continue_final=True,
                n=min(fcfg.wave_size, fcfg.n - counts[i].sampled),
                seed=derive_seed(base_seed, i) + counts[i].sampled,
            )
            for i in todo
        ]
        params = sampling_params(fcfg, shard)  # seeded base_seed; every request carries its own seed
        # Continuations are not the bar's units (rows are): pass their tokens on, not their count.
        graded = generate_graded(
            generator,
            grader,
            requests,
            [items[i].answer for i in todo],
            params,
            on_progress=lambda _sequences, tokens: report(0, tokens),
        )
        for i, samples in zip(todo, graded):
            for g in samples:
                counts[i].sampled += 1
                counts[i].verdicts.append(g.verdict.correct)
                if g.verdict.correct:
                    counts[i].correct += 1
                    counts[i].example = counts[i].example or g.completion.text
    report(len(items) - finished, 0)
    return counts


def diagnose_summary(results: list[FilterResult]) -> dict[str, Any]:
    """Coverage and mean accuracy from intervention vs original step (paper Table 1's comparison)."""
    problems = {r.problem_id for r in results}
    cov_i = len({r.problem_id for r in results if r.continuations_correct > 0})
    acc_i = sum(r.continuations_correct for r in results) / max(1, sum(r.continuations for r in results))
    cov_o = len({r.problem_id for r in results if (r.original_correct or 0) > 0})
    acc_o = sum(r.original_correct or 0 for r in results) / max(1, sum(r.original_continuations or 0 for r in results))
    return {
        "diagnose_problems": len(problems),
        "intervention_coverage": cov_i,
        "intervention_accuracy": acc_i,
        "original_step_coverage": cov_o,
        "original_step_accuracy": acc_o,
    }

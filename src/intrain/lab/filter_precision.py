"""How precise is the continuation filter? With ground truth, every kept row can be checked.

The filter keeps an intervention when at least `min_correct` of `n` continuations from own prefix +
intervention are correct. A continuation can succeed by luck from a wrong intervention, and fail from
a right one. Here each candidate is continued `lab.precision_n` times (no early stop, verdicts kept in
order, so every smaller n is read off the first n) and the ground truth says whether its prefix +
intervention is error-free. For each (n, min_correct):

  precision  kept candidates that are error-free / kept candidates
  recall     error-free candidates that are kept / error-free candidates

for two proposers: the self-proposer (the propose stage's first `ok` proposal per attempt) and the
oracle with location noise `lab.precision_noise` (so its candidates mix right and wrong ones).
Intervals are Wilson intervals over candidates. This tells a user what `filter.min_correct` to run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from intrain import fingerprints
from intrain.data import Problem
from intrain.interventions import guided_prefix, parse_intervention
from intrain.lab.table1 import failed_with_ground_truth
from intrain.progress import StageProgress, console
from intrain.records import FilterResult, FilterTrial, Proposal
from intrain.stages import propose, sample
from intrain.stages.common import RunContext, chunks
from intrain.stages.filter import Continuation, continue_prefixes
from intrain.stats import wilson_interval
from intrain.steps import split_substeps
from intrain.store import Stage, atomic_write_json, atomic_write_text, read_stage_records
from intrain.truth.arithmetic import first_error
from intrain.truth.oracle import oracle_intervention

NAME = "lab-filter-precision"
GRID_N = (8, 16, 32)
GRID_MIN_CORRECT = (1, 2, 4)


def run(ctx: RunContext) -> dict[str, Any]:
    sample.run(ctx)
    propose.run(ctx)
    stage = ctx.open_stage(NAME, fingerprints.LAB_FILTER_PRECISION)
    if not stage.complete:
        candidates = build_candidates(ctx)
        continue_candidates(ctx, stage, candidates)
        stage.finish({"candidates": len(candidates), "error_free": sum(c[2] for c in candidates)})
    summary = summarize(stage.records(FilterTrial), ctx.config.lab.precision_n)
    atomic_write_json(stage.path / "filter_precision.json", summary)
    markdown = table_markdown(summary)
    atomic_write_text(stage.path / "filter_precision.md", markdown)
    console.print(markdown)
    return summary


Candidate = tuple[Problem, str, bool, FilterTrial]  # problem, prefix to continue, error-free, record to fill


def build_candidates(ctx: RunContext) -> list[Candidate]:
    cfg = ctx.config
    separator = cfg.propose.separator
    attempts = failed_with_ground_truth(ctx)
    wanted = {a.attempt_id for a, _, _ in attempts}
    rng = random.Random(cfg.lab.oracle_seed)
    out: list[Candidate] = []

    def add(problem: Problem, attempt_id: str, proposer: str, location: int, prefix: str) -> None:
        error_free = first_error(problem, prefix, separator).location is None
        trial = FilterTrial(
            attempt_id=attempt_id,
            problem_id=problem.id,
            proposer=proposer,
            location=location,
            error_free=error_free,
            verdicts=[],
        )
        out.append((problem, prefix, error_free, trial))

    seen: set[str] = set()
    for p in read_stage_records(ctx.run_dir, propose.NAME, Proposal):
        if p.status == "ok" and p.attempt_id in wanted and p.attempt_id not in seen:
            seen.add(p.attempt_id)
            assert p.location is not None and p.guided_prefix is not None
            problem = p.as_problem()
            add(problem, p.attempt_id, "self", p.location, p.guided_prefix)
    for attempt, problem, _ in attempts:
        steps = split_substeps(attempt.completion, separator)
        output = oracle_intervention(
            problem, attempt.completion, rng, location_noise=cfg.lab.precision_noise, separator=separator
        )
        parsed = parse_intervention(output or "", len(steps), [s.text for s in steps])
        assert parsed.status == "ok" and parsed.content is not None and parsed.location is not None, parsed
        add(
            problem,
            attempt.attempt_id,
            "oracle",
            parsed.location,
            guided_prefix(attempt.completion, parsed.content, parsed.location, separator),
        )
    return out


def continue_candidates(ctx: RunContext, stage: Stage, candidates: list[Candidate]) -> None:
    cfg = ctx.config
    n = cfg.lab.precision_n
    fcfg = cfg.filter.model_copy(update={"n": n, "wave_size": n, "min_correct": 1})
    generator = ctx.generator(cfg.model)
    with StageProgress(NAME, total=len(candidates)) as progress:
        for index, shard in enumerate(chunks(candidates, cfg.filter.shard_size)):
            if not stage.has_shard(index):
                counts = continue_prefixes(
                    generator,
                    ctx.grader,
                    [Continuation(p.problem, p.answer, prefix) for p, prefix, _, _ in shard],
                    fcfg,
                    cfg.data.prompt_template,
                    index,
                    early_stop=False,
                )
                trials = [trial for _, _, _, trial in shard]
                for trial, c in zip(trials, counts):
                    trial.verdicts = c.verdicts
                stage.write_records(index, trials, FilterTrial)
            progress.advance(len(shard))


def summarize(trials: list[FilterTrial], max_n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"proposers": {}}
    for proposer in sorted({t.proposer for t in trials}):
        rows = [t for t in trials if t.proposer == proposer]
        good = [t for t in rows if t.error_free]
        block: dict[str, Any] = {"candidates": len(rows), "error_free": len(good), "grid": []}
        for n in [n for n in GRID_N if n <= max_n]:
            for m in GRID_MIN_CORRECT:
                kept = [t for t in rows if sum(t.verdicts[:n]) >= m]
                kept_good = sum(t.error_free for t in kept)
                block["grid"].append(
                    {
                        "n": n,
                        "min_correct": m,
                        "kept": len(kept),
                        "precision": kept_good / len(kept) if kept else None,
                        "precision_ci": wilson_interval(kept_good, len(kept)),
                        "recall": kept_good / len(good) if good else None,
                        "recall_ci": wilson_interval(kept_good, len(good)),
                    }
                )
        out["proposers"][proposer] = block
    return out


def kept_by_placement(results: Iterable[FilterResult], separator: str) -> dict[str, dict[str, int]]:
    """Where each filtered intervention sits against its attempt's true first error (`at`, `earlier`: a
    correct step replaced, `later`: the prefix keeps the error), and how many of each the filter kept.
    With a noisy proposer this says what the filter lets through, and so what SFT clones."""
    counts = {where: {"candidates": 0, "kept": 0} for where in ("at", "earlier", "later")}
    for result in results:
        true = first_error(result.as_problem(), result.attempt, separator).location
        if true is None or result.location is None:
            continue
        where = "at" if result.location == true else "earlier" if result.location < true else "later"
        counts[where]["candidates"] += 1
        counts[where]["kept"] += result.kept
    return counts


def table_markdown(summary: dict[str, Any]) -> str:
    def rate(value: float | None, ci: list[float] | tuple[float, float]) -> str:
        return "-" if value is None else f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    lines = []
    for proposer, block in summary["proposers"].items():
        lines += [
            f"**{proposer}**: {block['candidates']} candidates, {block['error_free']} error-free by the ground truth",
            "",
            "| n | min_correct | kept | precision [95% CI] | recall [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for g in block["grid"]:
            lines.append(
                f"| {g['n']} | {g['min_correct']} | {g['kept']} | {rate(g['precision'], g['precision_ci'])} "
                f"| {rate(g['recall'], g['recall_ci'])} |"
            )
        lines.append("")
    return "\n".join(lines)

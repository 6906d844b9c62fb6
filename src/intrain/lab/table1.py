"""Table 1 of the paper, on a family with ground truth: does an intervention help a continuation?

For failed attempts whose true first error is known (the arithmetic family's ground truth), the
policy continues `lab.n` times from each of five starting points, as the open assistant turn:

  problem_only     nothing: plain sampling from the problem
  prefix_only      the attempt's substeps before the true first error (+ the separator)
  prefix_original  ... plus the original erroneous substep
  prefix_self      the self-proposer's guided prefix (its own location + its intervention), for the
                   attempts where the `propose` stage parsed one
  prefix_oracle    the substeps before the true error + the oracle's correct replacement step

Coverage (attempts with >= 1 correct continuation) gets a Wilson interval; mean accuracy (over
attempts of each attempt's share of correct continuations) a bootstrap interval over attempts; each
condition's accuracy is also compared with prefix_original, paired by attempt.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from intrain import fingerprints
from intrain.data import Problem
from intrain.interventions import guided_prefix, original_step_prefix, parse_intervention
from intrain.progress import StageProgress, console
from intrain.records import ContinuationTrial, Proposal, Rollout
from intrain.stages import propose, sample
from intrain.stages.common import RunContext, chunks
from intrain.stages.filter import Continuation, continue_prefixes
from intrain.stats import bootstrap_mean_interval, paired_bootstrap_difference, wilson_interval
from intrain.steps import prefix_before, split_substeps
from intrain.store import Stage, atomic_write_json, atomic_write_text, read_stage_records
from intrain.truth.arithmetic import first_error
from intrain.truth.oracle import oracle_intervention

NAME = "lab-table1"
CONDITIONS = ("problem_only", "prefix_only", "prefix_original", "prefix_self", "prefix_oracle")


@dataclass(frozen=True)
class Trial:
    attempt: Rollout
    condition: str
    location: int
    prefix: str


def run(ctx: RunContext) -> dict[str, Any]:
    """Sample and propose (reusing finished stages), continue every condition, write table1.{md,json,png}."""
    sample.run(ctx)
    propose.run(ctx)
    stage = ctx.open_stage(NAME, fingerprints.LAB_TABLE1)
    if not stage.complete:
        trials = build_trials(ctx)
        continue_trials(ctx, stage, trials)
        stage.finish({"attempts": len({t.attempt.attempt_id for t in trials}), "trials": len(trials)})
    summary = summarize(stage.records(ContinuationTrial))
    summary["sizes"] = {
        "n": ctx.config.lab.n,
        "max_tokens": ctx.config.filter.max_tokens,
        "temperature": ctx.config.filter.temperature,
    }
    atomic_write_json(stage.path / "table1.json", summary)
    markdown = table_markdown(summary)
    atomic_write_text(stage.path / "table1.md", markdown)
    plot(summary, stage)
    console.print(markdown)
    return summary


def failed_with_ground_truth(ctx: RunContext) -> list[tuple[Rollout, Problem, int]]:
    """The first `lab.attempts` failed attempts whose true first error is known, with that location."""
    cfg = ctx.config
    rollouts = read_stage_records(ctx.run_dir, sample.NAME, Rollout)
    propose.check_ground_truth(rollouts, "intrain lab")
    out: list[tuple[Rollout, Problem, int]] = []
    for attempt in propose.failed_attempts(rollouts, None):
        if len(out) == cfg.lab.attempts:
            break
        problem = attempt.as_problem()
        location = first_error(problem, attempt.completion, cfg.propose.separator).location
        if location is not None:
            out.append((attempt, problem, location))
    if len(out) < cfg.lab.attempts:
        console.print(
            f"[yellow]intrain lab: {len(out)} failed attempts with a ground-truth error, fewer than "
            f"lab.attempts={cfg.lab.attempts}; raise data.train.size or sample.n for more"
        )
    return out


def build_trials(ctx: RunContext) -> list[Trial]:
    """Every condition of the first `lab.attempts` failed attempts that have a ground-truth first error."""
    cfg = ctx.config
    separator = cfg.propose.separator
    self_prefix: dict[str, tuple[int, str]] = {}
    for p in read_stage_records(ctx.run_dir, propose.NAME, Proposal):
        if p.status == "ok" and p.attempt_id not in self_prefix:
            assert p.location is not None and p.guided_prefix is not None
            self_prefix[p.attempt_id] = (p.location, p.guided_prefix)
    rng = random.Random(cfg.lab.oracle_seed)
    trials: list[Trial] = []
    for attempt, problem, location in failed_with_ground_truth(ctx):
        steps = split_substeps(attempt.completion, separator)
        before = prefix_before(attempt.completion, steps, location)
        oracle = parse_intervention(
            oracle_intervention(problem, attempt.completion, rng, separator=separator) or "",
            len(steps),
            [s.text for s in steps],
        )
        assert oracle.status == "ok" and oracle.content is not None and oracle.location is not None, oracle
        trials += [
            Trial(attempt, "problem_only", 0, ""),
            Trial(attempt, "prefix_only", location, before + separator if before else ""),
            Trial(attempt, "prefix_original", location, original_step_prefix(attempt.completion, steps, location)),
            Trial(
                attempt,
                "prefix_oracle",
                oracle.location,
                guided_prefix(attempt.completion, oracle.content, oracle.location, separator),
            ),
        ]
        if attempt.attempt_id in self_prefix:
            self_location, prefix = self_prefix[attempt.attempt_id]
            trials.append(Trial(attempt, "prefix_self", self_location, prefix))
    return trials


def continue_trials(ctx: RunContext, stage: Stage, trials: list[Trial]) -> None:
    cfg = ctx.config
    fcfg = cfg.filter.model_copy(update={"n": cfg.lab.n, "wave_size": cfg.lab.n, "min_correct": 1})
    generator = ctx.generator(cfg.model)
    with StageProgress(NAME, total=len(trials)) as progress:
        for index, shard in enumerate(chunks(trials, cfg.filter.shard_size)):
            if not stage.has_shard(index):
                counts = continue_prefixes(
                    generator,
                    ctx.grader,
                    [Continuation(t.attempt.problem, t.attempt.answer, t.prefix) for t in shard],
                    fcfg,
                    cfg.data.prompt_template,
                    index,
                    early_stop=False,
                )
                stage.write_records(
                    index,
                    [
                        ContinuationTrial(
                            attempt_id=t.attempt.attempt_id,
                            problem_id=t.attempt.problem_id,
                            condition=t.condition,
                            location=t.location or None,
                            prefix=t.prefix,
                            sampled=c.sampled,
                            correct=c.correct,
                        )
                        for t, c in zip(shard, counts)
                    ],
                    ContinuationTrial,
                )
            progress.advance(len(shard))


def summarize(trials: list[ContinuationTrial]) -> dict[str, Any]:
    by_condition: dict[str, dict[str, float]] = defaultdict(dict)
    for t in trials:
        by_condition[t.condition][t.attempt_id] = t.correct / t.sampled if t.sampled else 0.0
    out: dict[str, Any] = {"conditions": {}}
    reference = by_condition.get("prefix_original", {})
    for condition in CONDITIONS:
        accuracy = by_condition.get(condition, {})
        if not accuracy:
            continue
        values = list(accuracy.values())
        covered = sum(v > 0 for v in values)
        row: dict[str, Any] = {
            "attempts": len(values),
            "coverage": covered / len(values),
            "coverage_ci": wilson_interval(covered, len(values)),
            "accuracy": sum(values) / len(values),
            "accuracy_ci": bootstrap_mean_interval(values),
        }
        if condition != "prefix_original" and reference:
            row["vs_original"] = paired_bootstrap_difference(accuracy, reference)
        out["conditions"][condition] = row
    return out


def table_markdown(summary: dict[str, Any]) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    lines = [
        "| condition | attempts | coverage [95% CI] | mean accuracy [95% CI] | Δ accuracy vs prefix + original "
        "step [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for condition, row in summary["conditions"].items():
        diff = row.get("vs_original")
        lines.append(
            f"| {condition} | {row['attempts']} | {pct(row['coverage'])} [{pct(row['coverage_ci'][0])}, "
            f"{pct(row['coverage_ci'][1])}] | {pct(row['accuracy'])} [{pct(row['accuracy_ci'][0])}, "
            f"{pct(row['accuracy_ci'][1])}] | "
            + (f"{100 * diff[0]:+.1f} pts [{100 * diff[1]:+.1f}, {100 * diff[2]:+.1f}]" if diff else "-")
            + " |"
        )
    sizes = summary.get("sizes", {})
    return "\n".join(lines) + (
        f"\n\n{sizes.get('n')} continuations per attempt and condition (temperature {sizes.get('temperature')}, "
        f"{sizes.get('max_tokens')} tokens). Coverage: Wilson interval; accuracy: bootstrap over attempts; "
        "Δ: paired bootstrap over the attempts both conditions have.\n"
    )


def plot(summary: dict[str, Any], stage: Stage) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = summary["conditions"]
    names = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key in zip(axes, ("coverage", "accuracy")):
        means = [rows[n][key] for n in names]
        errors = [
            [m - rows[n][f"{key}_ci"][0] for n, m in zip(names, means)],
            [rows[n][f"{key}_ci"][1] - m for n, m in zip(names, means)],
        ]
        ax.bar(range(len(names)), means, yerr=errors, capsize=4)
        ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
        ax.set_title(f"{key} (95% CI)")
    fig.tight_layout()
    fig.savefig(stage.path / "table1.png", dpi=100)
    plt.close(fig)

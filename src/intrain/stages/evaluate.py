"""Stage: pass@k / avg@n of a checkpoint on held-out problems (paper §3.10)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from intrain import fingerprints
from intrain.metrics import avg_at_n, mean_pass_at_k
from intrain.records import Rollout
from intrain.stages.common import RunContext
from intrain.stages.rollouts import write_rollouts
from intrain.store import Stage


def stage_name(label: str) -> str:
    return f"eval-{label}"


def run(ctx: RunContext, label: str = "base", model_path: str | None = None, adapter: str | None = None) -> Stage:
    """Evaluate `model_path` (+ `adapter`; default: the configured policy) under the name `label`."""
    cfg = ctx.config
    target = {"path": model_path or cfg.model.path, "adapter": adapter if model_path else cfg.model.adapter}
    stage = ctx.open_stage(
        stage_name(label), fingerprints.EVAL, target=target, target_producer=fingerprints.producer_hash(model_path)
    )
    if stage.complete:
        return stage
    problems = ctx.problems("eval")
    timings = write_rollouts(ctx, stage, problems, cfg.eval, f"eval {label}", model_path, adapter)
    rollouts = stage.records(Rollout)
    metrics = summarize(rollouts, cfg.eval.ks)
    metrics.update(
        label=label,
        model=target,
        samples_per_problem=cfg.eval.n,
        temperature=cfg.eval.temperature,
        max_tokens=cfg.eval.max_tokens,
    )
    stage.write_json("eval.json", metrics)
    stage.write_text("eval.md", markdown_table({label: metrics}, cfg.eval.ks))
    # pass@k and the rates reach RUN/metrics.jsonl (and output.report_to) beside the counts.
    stage.finish({"problems": len(problems), "rollouts": len(rollouts)}, timings, metrics=metrics["overall"])
    return stage


def summarize(rollouts: list[Rollout], ks: list[int]) -> dict[str, Any]:
    """Overall and per-source pass@k, avg@n, no-answer and truncation rates."""

    def block(subset: list[Rollout]) -> dict[str, Any]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in subset:
            groups[r.problem_id].append(r.correct)
        values = list(groups.values())
        n = min(len(g) for g in values)
        out: dict[str, Any] = {"problems": len(values), "samples": len(subset), "avg@n": avg_at_n(values)}
        for k in ks:
            if k <= n:
                out[f"pass@{k}"] = mean_pass_at_k(values, k)
        out["no_answer_rate"] = sum(r.reason == "no_answer" for r in subset) / len(subset)
        out["truncation_rate"] = sum(r.finish_reason == "length" for r in subset) / len(subset)
        out["mean_completion_tokens"] = sum(r.completion_tokens for r in subset) / len(subset)
        return out

    if not rollouts:
        return {"overall": {}, "by_source": {}}
    by_source: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        by_source[r.source].append(r)
    return {"overall": block(rollouts), "by_source": {s: block(rs) for s, rs in sorted(by_source.items())}}


def markdown_table(results: dict[str, dict[str, Any]], ks: list[int]) -> str:
    """One row per evaluated model (and per source when there are several)."""
    header = ["model", "source", "problems", "avg@n", *[f"pass@{k}" for k in ks], "no answer", "truncated", "tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, metrics in results.items():
        blocks = [("all", metrics["overall"])]
        if len(metrics["by_source"]) > 1:
            blocks += list(metrics["by_source"].items())
        for source, m in blocks:
            cells = [
                label,
                source,
                str(m["problems"]),
                f"{m['avg@n']:.3f}",
                *[f"{m[f'pass@{k}']:.3f}" if f"pass@{k}" in m else "-" for k in ks],
                f"{m['no_answer_rate']:.3f}",
                f"{m['truncation_rate']:.3f}",
                f"{m['mean_completion_tokens']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

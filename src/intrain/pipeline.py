"""The whole InT pass as one resumable chain of stages, and its funnel report."""

from __future__ import annotations

from typing import Any

from intrain.progress import console
from intrain.stages import evaluate, propose, rl, sample, sft
from intrain.stages import filter as filter_stage
from intrain.stages.common import RunContext
from intrain.store import atomic_write_json, atomic_write_text


def run(ctx: RunContext) -> dict[str, Any]:
    """sample -> eval(base) -> propose -> filter -> sft -> eval(sft) [-> rl -> eval(rl)]; re-running resumes."""
    console.rule(f"intrain run -> {ctx.run_dir}")
    sampled = sample.run(ctx)
    results = {"base": _metrics(evaluate.run(ctx, label="base"))}
    proposed = propose.run(ctx)
    filtered = filter_stage.run(ctx)
    trained = sft.run(ctx)
    checkpoint = sft.trained_model(trained)
    if checkpoint:
        results["int-sft"] = _metrics(evaluate.run(ctx, label="int-sft", model_path=checkpoint))
    if ctx.config.rl.enabled:
        # Outcome-reward RL from the InT checkpoint (or from the policy when SFT had nothing to train on).
        # Stage names match `intrain compare`'s int arm, so a comparison in the same run reuses them.
        seed = ctx.config.rl.seed
        trained_rl = rl.run(ctx, label=f"rl-int-s{seed}", init_model=checkpoint or None)
        results["int-rl"] = _metrics(evaluate.run(ctx, label=f"int-s{seed}", model_path=rl.trained_model(trained_rl)))
    funnel_rows = funnel(
        sampled.counts(),
        proposed.counts(),
        filtered.counts(),
        trained.counts(),
    )
    table = evaluate.markdown_table(results, ctx.config.eval.ks)
    report = "## Funnel\n\n" + funnel_markdown(funnel_rows) + "\n## Eval\n\n" + table
    atomic_write_text(ctx.run_dir / "report.md", report)
    atomic_write_json(
        ctx.run_dir / "summary.json", {"funnel": funnel_rows, "eval": results, "stage_timings": stage_timings(ctx)}
    )
    console.print(report)
    return results


def _metrics(stage) -> dict[str, Any]:
    import json

    return json.loads((stage.path / "eval.json").read_text())


def funnel(sample_counts: dict, propose_counts: dict, filter_counts: dict, sft_counts: dict) -> list[tuple[str, int]]:
    parsed = sum(propose_counts.get(s, 0) for s in ("ok", "leak", "not_first"))
    return [
        ("problems", sample_counts["problems"]),
        ("rollouts", sample_counts["rollouts"]),
        ("failed rollouts", sample_counts["failed"]),
        ("failed attempts proposed on", propose_counts["failed_attempts"]),
        ("proposals", propose_counts["proposals"]),
        ("parsed", parsed),
        ("not leaking", parsed - propose_counts.get("leak", 0)),
        ("first per attempt", propose_counts.get("ok", 0)),
        ("kept by continuation filter", filter_counts["kept"]),
        ("SFT rows", sft_counts["sft_rows"]),
    ]


def funnel_markdown(rows: list[tuple[str, int]]) -> str:
    return "| step | count |\n|---|---|\n" + "".join(f"| {name} | {count} |\n" for name, count in rows)


def stage_timings(ctx: RunContext) -> dict[str, Any]:
    import json

    out = {}
    for manifest in sorted(ctx.run_dir.glob("*/manifest.json")):
        out[manifest.parent.name] = json.loads(manifest.read_text()).get("timings", {})
    return out

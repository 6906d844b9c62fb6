"""`intrain compare`: the paper's main comparison (§4.1) on your own model and data.

Every arm starts from the configured policy, gets the same RL budget (the `rl` section) and is
evaluated on the same held-out problems with the same sampling (the `eval` section):

  rl              RL from the policy
  hint_rl         RL where `compare.hint_share` of the problems also appear with the first step of their
                  reference solution (the POPE recipe: a guided and a plain copy, see stages/rl.py)
  sft_reference   SFT on the reference solutions, then RL
  sft_reflection  SFT on the policy's corrected rewrites of its failed attempts, then RL
  rft             SFT on the policy's own correct samples (rejection-sampling fine-tuning), then RL
  int             InT: SFT on own prefix + self-proposed intervention, then RL

Shared artifacts (base rollouts, base eval, SFT checkpoints) are computed once; RL and its eval
run once per seed in `compare.seeds` (`compare.baseline_seeds` for the arms other than int and rl),
and the table reports the mean and the spread over seeds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from intrain import fingerprints
from intrain.config import ARMS
from intrain.metrics import pass_at_k
from intrain.progress import console
from intrain.records import Reflection, Rollout
from intrain.stages import evaluate, propose, reflect, rl, sample, sft
from intrain.stages import filter as filter_stage
from intrain.stages.common import RunContext
from intrain.stages.sft import Target
from intrain.stats import paired_bootstrap_difference
from intrain.store import atomic_write_json, atomic_write_text, read_stage_records


def prepare_init(ctx: RunContext, arm: str) -> tuple[str | None, list[str]]:
    """The arm's RL starting checkpoint (None = the policy itself) and the stage folders it used."""
    if arm in ("rl", "hint_rl"):
        return None, []
    if arm == "int":
        stages = [propose.run(ctx), filter_stage.run(ctx), sft.run(ctx)]
    elif arm == "sft_reference":
        targets = [
            Target(p.id, p.problem, p.reference_solution) for p in ctx.problems("train") if p.reference_solution.strip()
        ]
        stages = [sft.train_stage(ctx, "sft-reference", fingerprints.SFT_REFERENCE, targets, close_turn=True)]
    elif arm == "rft":
        targets = [
            Target(r.problem_id, r.problem, r.completion)
            for r in read_stage_records(ctx.run_dir, sample.NAME, Rollout)
            if r.correct
        ]
        stages = [sft.train_stage(ctx, "sft-rft", fingerprints.SFT_RFT, targets, close_turn=True)]
    elif arm == "sft_reflection":
        reflections = reflect.run(ctx)
        targets = [Target(r.problem_id, r.problem, r.reflection) for r in reflections.records(Reflection) if r.correct]
        stages = [
            reflections,
            sft.train_stage(ctx, "sft-reflection", fingerprints.SFT_REFLECTION, targets, close_turn=True),
        ]
    else:
        raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return sft.trained_model(stages[-1]), [s.name for s in stages]


def run(ctx: RunContext, arms: list[str]) -> dict[str, Any]:
    cfg = ctx.config
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"--arms: unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    console.rule(f"intrain compare {' '.join(arms)} -> {ctx.run_dir}")
    sample.run(ctx)
    if cfg.rl.data == "covered":  # every arm's RL trains on the problems InT's filter covered: make them first
        propose.run(ctx)
        filter_stage.run(ctx)
    base_eval = evaluate.run(ctx, label="base")
    base_rollouts = base_eval.records(Rollout)
    table: dict[str, Any] = {
        "base": {
            "seeds": [],
            "eval": [_eval_json(base_eval)],
            "stages": ["eval-base"],
            "entropy": mean_token_entropy(ctx, None, base_rollouts),
        }
    }
    for arm in arms:
        init, stages = prepare_init(ctx, arm)
        seeds = cfg.compare.seeds if arm in ("int", "rl") else (cfg.compare.baseline_seeds or cfg.compare.seeds)
        entry: dict[str, Any] = {
            "init": init,
            "seeds": list(seeds),
            "eval": [],
            "rl": [],
            "stages": list(stages),
            "entropy": mean_token_entropy(ctx, init, base_rollouts),
        }
        for seed in seeds:
            hint = cfg.compare.hint_share if arm == "hint_rl" else 0.0
            trained = rl.run(ctx, label=f"rl-{arm}-s{seed}", init_model=init, hint_share=hint, seed=seed)
            evaluated = evaluate.run(ctx, label=f"{arm}-s{seed}", model_path=rl.trained_model(trained))
            entry["rl"].append(trained.counts())
            entry["eval"].append(_eval_json(evaluated))
            entry["stages"] += [trained.name, evaluated.name]
        table[arm] = entry
    return write_table(ctx, table)


def write_table(ctx: RunContext, table: dict[str, Any]) -> dict[str, Any]:
    """Summarise `table` (compare.json's "arms") over the run's stages; write compare.json, compare.md
    and the RL curves. Reads records only, so it needs no model."""
    summary = summarize(ctx, table, ctx.config.eval.ks)
    atomic_write_json(ctx.run_dir / "compare.json", {"arms": table, "summary": summary})
    markdown = compare_markdown(summary, ctx.config.eval.ks)
    atomic_write_text(ctx.run_dir / "compare.md", markdown)
    plot_rl_curves(ctx.run_dir, table)
    console.print(markdown)
    return summary


def merge_tables(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """One table from the "arms" of compare.json files that ran other arms or seeds from the same
    starting run (each (arm, seed) in its own process, say). Seeds come out sorted; a seed two files
    both ran counts once."""
    merged: dict[str, Any] = {}
    for table in tables:
        for arm, entry in table.items():
            if arm == "base":
                merged.setdefault(arm, entry)
                continue
            target = merged.setdefault(arm, {**entry, "seeds": [], "eval": [], "rl": [], "stages": []})
            for i, seed in enumerate(entry["seeds"]):
                if seed not in target["seeds"]:
                    target["seeds"].append(seed)
                    target["eval"].append(entry["eval"][i])
                    target["rl"].append(entry["rl"][i])
            target["stages"] += [name for name in entry["stages"] if name not in target["stages"]]
    for arm, entry in merged.items():
        if arm != "base" and entry["seeds"]:
            order = sorted(range(len(entry["seeds"])), key=entry["seeds"].__getitem__)
            for key in ("seeds", "eval", "rl"):
                entry[key] = [entry[key][i] for i in order]
    return merged


def _eval_json(stage) -> dict[str, Any]:
    return json.loads((stage.path / "eval.json").read_text())["overall"]


def mean_token_entropy(ctx: RunContext, model_path: str | None, rollouts: list[Rollout], limit: int = 32) -> float:
    """Mean next-token entropy (nats) of a checkpoint over fixed texts: the base policy's eval
    completions. The paper's Fig. 8 measure of how far SFT moved the model's distribution."""
    import torch

    from intrain.engines.base import Request, render_ids
    from intrain.models import load_model_and_tokenizer
    from intrain.stages.common import user_message

    cfg = ctx.config
    ctx.release_generators()
    path, adapter = (model_path, None) if model_path else (cfg.model.path, cfg.model.adapter)
    model, tokenizer = load_model_and_tokenizer(path, device=cfg.model.device, dtype=cfg.model.dtype, adapter=adapter)
    total, count = 0.0, 0
    with torch.inference_mode():
        for rollout in rollouts[:limit]:
            prompt = render_ids(
                tokenizer,
                Request(messages=user_message(cfg.data.prompt_template, rollout.problem)),
                cfg.model.chat_template_kwargs,
            )
            completion = tokenizer(rollout.completion, add_special_tokens=False)["input_ids"]
            if not completion:
                continue
            ids = torch.tensor([prompt + completion], device=model.device)
            logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            total += float(-(logp.exp() * logp).sum(-1).sum())
            count += len(completion)
    del model
    return total / max(1, count)


def _mean_spread(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else 0.0)


def summarize(ctx: RunContext, table: dict[str, Any], ks: list[int]) -> dict[str, Any]:
    manifests = {p.parent.name: json.loads(p.read_text()) for p in ctx.run_dir.glob("*/manifest.json")}
    out = {}
    for arm, entry in table.items():
        row: dict[str, Any] = {"seeds": entry["seeds"], "entropy_at_rl_start": entry["entropy"]}
        for key in ["avg@n", *[f"pass@{k}" for k in ks]]:
            row[key] = _mean_spread([e.get(key) for e in entry["eval"]])
        row["train_reward_last10pct"] = _mean_spread([r.get("reward_last10pct") for r in entry.get("rl", [])])
        row["zero_adv_ratio_mean"] = _mean_spread([r.get("zero_adv_ratio_mean") for r in entry.get("rl", [])])
        used = [manifests[name] for name in entry["stages"] if name in manifests]
        row["wall_s"] = round(sum(m.get("timings", {}).get("wall_s", 0.0) for m in used), 1)
        rl_tokens = sum((r.get("rollouts") or 0) * (r.get("completion_length_mean") or 0) for r in entry.get("rl", []))
        row["tokens_generated"] = int(sum(m.get("timings", {}).get("tokens", 0) for m in used) + rl_tokens)
        out[arm] = row
    if "rl" in table:
        control = {k: per_problem_pass_at_k(ctx.run_dir, _eval_stages(table["rl"]), k) for k in (ks[0], ks[-1])}
        for arm, entry in table.items():
            if arm in ("rl", "base"):
                continue
            out[arm]["vs_rl"] = {
                f"pass@{k}": paired_bootstrap_difference(
                    per_problem_pass_at_k(ctx.run_dir, _eval_stages(entry), k), control[k]
                )
                for k in (ks[0], ks[-1])
            }
    return out


def _eval_stages(entry: dict[str, Any]) -> list[str]:
    return [name for name in entry["stages"] if name.startswith("eval-")]


def per_problem_pass_at_k(run_dir: Path, eval_stages: list[str], k: int) -> dict[str, float]:
    """Each held-out problem's pass@k, averaged over the arm's seeds (one eval stage per seed)."""
    sums: dict[str, list[float]] = {}
    for name in eval_stages:
        groups: dict[str, list[bool]] = {}
        for r in read_stage_records(run_dir, name, Rollout):
            groups.setdefault(r.problem_id, []).append(r.correct)
        for problem, verdicts in groups.items():
            sums.setdefault(problem, []).append(pass_at_k(len(verdicts), sum(verdicts), min(k, len(verdicts))))
    return {problem: statistics.fmean(values) for problem, values in sums.items()}


def compare_markdown(summary: dict[str, Any], ks: list[int]) -> str:
    def fmt(pair: Any) -> str:
        if not isinstance(pair, tuple) and not isinstance(pair, list):
            return "-" if pair is None else f"{pair:.3f}"
        mean, spread = pair
        return "-" if mean is None else f"{mean:.3f} ± {spread:.3f}"

    def fmt_diff(row: dict[str, Any], k: int) -> str:
        found = row.get("vs_rl", {}).get(f"pass@{k}")
        return "-" if found is None else f"{found[0]:+.3f} [{found[1]:+.3f}, {found[2]:+.3f}]"

    compared = sorted({ks[0], ks[-1]})
    header = [
        "arm",
        "seeds",
        *[f"pass@{k}" for k in ks],
        *[f"Δ pass@{k} vs rl [95% CI]" for k in compared],
        "train reward (last 10%)",
        "zero-adv ratio",
        "entropy at RL start",
        "tokens generated",
        "wall s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, row in summary.items():
        cells = [
            arm,
            ",".join(map(str, row["seeds"])) or "-",
            *[fmt(row[f"pass@{k}"]) for k in ks],
            *[fmt_diff(row, k) for k in compared],
            fmt(row["train_reward_last10pct"]),
            fmt(row["zero_adv_ratio_mean"]),
            fmt(row["entropy_at_rl_start"]),
            f"{row['tokens_generated']:,}",
            f"{row['wall_s']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        "\n\nMean ± standard deviation over RL seeds; the same held-out problems and sampling for every arm. "
        "Δ vs rl: difference of per-problem pass@k (averaged over seeds) from the rl arm, with a paired "
        "bootstrap 95% interval over problems.\n"
    )


def plot_rl_curves(run_dir: Path, table: dict[str, Any]) -> Path | None:
    """Training reward and zero-advantage ratio per RL step, one line per arm (mean over seeds)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]compare: matplotlib not installed; skipping the RL curves plot")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for arm, entry in table.items():
        logs = [rl.read_log(run_dir / name / rl.LOG_NAME) for name in entry["stages"] if name.startswith("rl-")]
        if not logs:
            continue
        steps = min(len(log) for log in logs)
        for ax, key in zip(axes, ("reward", "zero_adv_ratio")):
            ys = [statistics.fmean(log[i].get(key) or 0.0 for log in logs) for i in range(steps)]
            ax.plot(range(1, steps + 1), ys, label=arm)
    for ax, title in zip(axes, ("training reward", "zero-advantage ratio")):
        ax.set_xlabel("RL step")
        ax.set_title(title)
        ax.legend()
    path = run_dir / "rl_curves.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

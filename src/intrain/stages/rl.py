"""Stage 5: outcome-reward RL (GRPO) from a checkpoint, as the paper runs after InT SFT (§3.9).

The paper uses PipelineRL; we use TRL's GRPOTrainer with the same objective: binary reward from
our grader, advantage = reward - group mean with no std scaling (`scale_rewards="none"`), no KL
(`beta=0`), groups of `group_size` rollouts, `prompts_per_step` prompts per optimizer step,
temperature 1.0 and top_p 1.0. The stage folder is named by `label` so several arms (plain RL
from the base model, RL after InT, hint-guided RL) can live in one run directory:

    <run>/<label>/log.jsonl       one line per optimizer step
    <run>/<label>/checkpoints/    TRL checkpoints every `rl.save_steps` (a re-run resumes)
    <run>/<label>/model/          the final HF folder
    <run>/<label>/manifest.json   counts, model path

Hint-guided RL (the paper's POPE-like baseline): a fixed, seed-chosen share of the training
problems get the first `hint_fraction` of their reference solution's steps appended to the user
message; the model still writes a full solution, graded against the gold answer.
"""

from __future__ import annotations

import math
import random
from typing import Any

from intrain import fingerprints
from intrain.config import RLConfig
from intrain.data import Problem
from intrain.progress import console
from intrain.rewards import CorrectnessReward
from intrain.stages.common import RunContext, user_message
from intrain.steps import DEFAULT_SEPARATOR, split_substeps
from intrain.store import Stage
from intrain.training.grpo import LOG_NAME, read_log, train_grpo

NAME = "rl"
HINT_HEADER = "\n\nHere is the beginning of a solution:\n"


def run(ctx: RunContext, label: str = NAME, init_model: str | None = None, init_adapter: str | None = None,
        hint_share: float | None = None, seed: int | None = None) -> Stage:
    """GRPO from `init_model` (+ `init_adapter`), or by default from the configured policy
    (`model.path` + `model.adapter`), on the train problems; writes the stage folder `label`.
    `hint_share` and `seed` override `rl.hint_share` and `rl.seed` for this call (`intrain compare`)."""
    cfg = ctx.config
    overrides: dict[str, Any] = {}
    if hint_share is not None:
        if not 0.0 <= hint_share <= 1.0:
            raise ValueError(f"hint_share must be in [0, 1], got {hint_share}")
        overrides["hint_share"] = float(hint_share)
    if seed is not None:
        overrides["seed"] = seed
    rl = cfg.rl.model_copy(update=overrides)
    if init_model is None:
        if init_adapter is not None:
            raise ValueError("init_adapter needs init_model")
        init_model, init_adapter = cfg.model.path, cfg.model.adapter
    stage = ctx.open_stage(label, fingerprints.RL, cfg.model_copy(update={"rl": rl}), init_model=init_model,
                           init_adapter=init_adapter, init_producer=fingerprints.producer_hash(init_model))
    if stage.complete:
        return stage

    problems = ctx.problems("train")
    rows = build_prompts(problems, cfg.data.prompt_template, rl)
    if rl.hint_share > 0 and not any(r["hinted"] for r in rows):
        console.print(f"[yellow]{label}: hint_share={rl.hint_share} but no problem has a reference solution long "
                      "enough for a hint; this is plain RL")
    # Release the sampling engine first: one copy of the model at a time.
    ctx.release_generators()
    result = train_grpo(rows, rl, cfg.model, init_model, init_adapter, stage.path, CorrectnessReward(ctx.grader))
    records = read_log(stage.path / LOG_NAME)
    counts: dict[str, Any] = {
        "steps": result["steps"],
        "train_problems": len(problems),
        "hinted_problems": sum(r["hinted"] for r in rows),
        "rollouts": result["steps"] * rl.prompts_per_step * rl.group_size,
        "reward_last10pct": _mean_last(records, "reward", 0.1),
        "zero_adv_ratio_mean": _mean([r.get("zero_adv_ratio") for r in records]),
        "completion_length_mean": _mean([r.get("completion_length") for r in records]),
        "clipped_ratio_mean": _mean([r.get("clipped_ratio") for r in records]),
        "resumed_from_step": result["resumed_from_step"],
        "vllm": result["vllm"],
    }
    stage.finish(counts, model=result["path"], init_model=init_model, init_adapter=init_adapter)
    console.print(f"{label}: {counts}")
    return stage


def trained_model(stage: Stage) -> str | None:
    """The checkpoint an RL stage produced."""
    return (stage.manifest() or {}).get("model")


# ----------------------------------------------------------------------------- prompts


def hint_text(reference_solution: str, fraction: float) -> str | None:
    """The first floor(fraction x steps) blank-line-separated steps of a reference solution, or None
    when that is no step at all (short or missing reference)."""
    steps = split_substeps(reference_solution or "", DEFAULT_SEPARATOR)
    keep = math.floor(fraction * len(steps))
    if keep < 1:
        return None
    return "\n\n".join(s.text.strip("\n") for s in steps[:keep])


def hinted_problem_ids(problems: list[Problem], share: float, fraction: float, seed: int) -> set[str]:
    """Ids of the problems whose prompt carries a hint: `share` of those that can have one (a fixed,
    seed-determined choice, independent of the problems' order in the source)."""
    if share <= 0:
        return set()
    eligible = sorted(p.id for p in problems if hint_text(p.reference_solution, fraction) is not None)
    count = round(share * len(eligible))
    return set(random.Random(seed).sample(eligible, count))


def build_prompts(problems: list[Problem], prompt_template: str, rl: RLConfig) -> list[dict[str, Any]]:
    """Conversational GRPO rows: `prompt` (one user message), `answer` (gold), `problem_id`, `hinted`."""
    hinted = hinted_problem_ids(problems, rl.hint_share, rl.hint_fraction, rl.seed)
    rows = []
    for p in problems:
        messages = user_message(prompt_template, p.problem)
        if p.id in hinted:
            messages[0]["content"] += HINT_HEADER + hint_text(p.reference_solution, rl.hint_fraction)
        rows.append({"prompt": messages, "answer": p.answer, "problem_id": p.id, "hinted": p.id in hinted})
    return rows


# ----------------------------------------------------------------------------- counts


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _mean_last(records: list[dict[str, Any]], key: str, share: float) -> float | None:
    if not records:
        return None
    by_step = {r["step"]: r for r in records}  # a step logged twice (resume) counts once
    ordered = [by_step[s] for s in sorted(by_step)]
    tail = ordered[-max(1, math.ceil(share * len(ordered))):]
    return _mean([r.get(key) for r in tail])

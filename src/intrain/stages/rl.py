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

The problems come from `rl.data` (see `training_problems`): the run's training problems, any
source (the paper config: the released CMU-AIRe/InT-RL), or `covered`, the distinct problems with
a kept intervention in this run's filter stage.

Hint-guided RL (the paper's "+ Hint-guided RL" baseline, the group's POPE recipe, arXiv
2601.18779): a fixed, seed-chosen share (`rl.hint_share`) of the problems appear twice in the RL
data, once plain and once with a short prefix of their reference solution appended to the user
message; the model still writes a full solution, graded against the gold answer, and what it
learns on the guided copy transfers to the plain one. "Short" is concrete here: the first
`rl.hint_steps` blank-line steps of the reference (default 1, the first step), never its last
step (which states the answer). POPE guides with minimal oracle prefixes, and the PipelineRL fork
the InT authors use ships its mix as `POPE-MIX-first_guide-no_guide` (a guided and an unguided
copy); reading `first_guide` as "the first step of the reference" is our inference. POPE's
per-problem search for the shortest prefix that yields any reward would cost rollouts per rung
and is not done. The guided copy's `problem_id` carries `HINT_ID_SUFFIX`, so the step log's
groups tell guided and plain rewards apart.
"""

from __future__ import annotations

import math
import random
from typing import Any

from intrain import fingerprints
from intrain.config import RLConfig
from intrain.data import DataError, Problem, load_problems
from intrain.progress import console
from intrain.records import FilterResult
from intrain.rewards import CorrectnessReward
from intrain.stages import filter as filter_stage
from intrain.stages.common import RunContext, user_message
from intrain.steps import DEFAULT_SEPARATOR, split_substeps
from intrain.store import Stage, read_stage_records
from intrain.training.args import is_main_process
from intrain.training.checkpoints import prune_checkpoints
from intrain.training.grpo import LOG_NAME, read_log, train_grpo

NAME = "rl"
HINT_HEADER = "\n\nHere is the beginning of a solution:\n"
HINT_ID_SUFFIX = "#hint"


def run(
    ctx: RunContext,
    label: str = NAME,
    init_model: str | None = None,
    init_adapter: str | None = None,
    hint_share: float | None = None,
    seed: int | None = None,
) -> Stage:
    """GRPO from `init_model` (+ `init_adapter`), or by default from the configured policy
    (`model.path` + `model.adapter`), on the problems `rl.data` names; writes the stage folder `label`.
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
    # 'covered' reads the filter stage, whose fingerprint enters ours: it must be finished before we open.
    problems = covered_problems(ctx) if rl.data == "covered" else None
    stage = ctx.open_stage(
        label,
        fingerprints.rl_inputs(rl),
        cfg.model_copy(update={"rl": rl}),
        init_model=init_model,
        init_adapter=init_adapter,
        init_producer=fingerprints.producer_hash(init_model),
    )
    if stage.complete:
        # A run killed between finishing and pruning left its checkpoints (~50 GB each for 4B): prune now.
        if is_main_process():
            prune_checkpoints(stage.path / "checkpoints", cfg.output.keep_checkpoints)
        return stage

    if problems is None:
        problems = training_problems(ctx, rl)
    rows = build_prompts(problems, cfg.data.prompt_template, rl)
    if rl.hint_share > 0 and not any(r["hinted"] for r in rows):
        console.print(
            f"[yellow]{label}: hint_share={rl.hint_share} but no problem has a reference solution of at "
            f"least {rl.hint_steps + 1} steps for a guided copy; this is plain RL"
        )
    # Release the sampling engine first: one copy of the model at a time.
    ctx.release_generators()
    keep = cfg.output.keep_checkpoints
    result = train_grpo(
        rows, rl, cfg.model, init_model, init_adapter, stage.path, CorrectnessReward(ctx.grader), keep_checkpoints=keep
    )
    records = read_log(stage.path / LOG_NAME)
    counts: dict[str, Any] = {
        "steps": result["steps"],
        "train_problems": len(problems),
        "hinted_problems": sum(r["hinted"] for r in rows),
        "rl_prompts": len(rows),
        "rollouts": result["steps"] * rl.prompts_per_step * rl.group_size,
        "reward_last10pct": _mean_last(records, "reward", 0.1),
        "zero_adv_ratio_mean": _mean([r.get("zero_adv_ratio") for r in records]),
        "completion_length_mean": _mean([r.get("completion_length") for r in records]),
        "clipped_ratio_mean": _mean([r.get("clipped_ratio") for r in records]),
        "resumed_from_step": result["resumed_from_step"],
        "vllm": result["vllm"],
    }
    if is_main_process():  # under `accelerate launch` every rank gets here; one writes
        stage.finish(
            counts, model=result["path"], init_model=init_model, init_adapter=init_adapter, rl_data=describe_data(rl)
        )
        prune_checkpoints(stage.path / "checkpoints", keep)
    console.print(f"{label}: {counts}")
    return stage


def trained_model(stage: Stage) -> str | None:
    """The checkpoint an RL stage produced."""
    return (stage.manifest() or {}).get("model")


# ----------------------------------------------------------------------------- prompts


def hint_text(reference_solution: str, steps: int = 1) -> str | None:
    """The first `steps` blank-line-separated steps of a reference solution, never its last step;
    None when the reference has fewer than two steps (or none)."""
    parts = split_substeps(reference_solution or "", DEFAULT_SEPARATOR)
    keep = min(steps, len(parts) - 1)
    if keep < 1:
        return None
    return "\n\n".join(s.text.strip("\n") for s in parts[:keep])


def hinted_problem_ids(problems: list[Problem], share: float, steps: int, seed: int) -> set[str]:
    """Ids of the problems that also get a guided copy: `share` of those that can have one (a fixed,
    seed-determined choice, independent of the problems' order in the source)."""
    if share <= 0:
        return set()
    eligible = sorted(p.id for p in problems if hint_text(p.reference_solution, steps) is not None)
    count = round(share * len(eligible))
    return set(random.Random(seed).sample(eligible, count))


def build_prompts(problems: list[Problem], prompt_template: str, rl: RLConfig) -> list[dict[str, Any]]:
    """Conversational GRPO rows: `prompt` (one user message), `answer` (gold), `problem_id`, `hinted`.
    Every problem has its plain row; each of the `rl.hint_share` chosen ones is followed by its guided
    copy (the first `rl.hint_steps` reference steps after `HINT_HEADER`, id + `HINT_ID_SUFFIX`)."""
    hinted = hinted_problem_ids(problems, rl.hint_share, rl.hint_steps, rl.seed)
    rows = []
    for p in problems:
        rows.append(
            {
                "prompt": user_message(prompt_template, p.problem),
                "answer": p.answer,
                "problem_id": p.id,
                "hinted": False,
            }
        )
        if p.id in hinted:
            hint = hint_text(p.reference_solution, rl.hint_steps)
            assert hint is not None, f"hinted_problem_ids picked {p.id}, whose reference has no hint"
            guided = user_message(prompt_template, p.problem)
            guided[0]["content"] += HINT_HEADER + hint
            rows.append({"prompt": guided, "answer": p.answer, "problem_id": p.id + HINT_ID_SUFFIX, "hinted": True})
    return rows


# ----------------------------------------------------------------------------- problems


def training_problems(ctx: RunContext, rl: RLConfig) -> list[Problem]:
    """The RL problems `rl.data` names: the run's training problems (None), a source, or 'covered'."""
    if rl.data is None:
        return ctx.problems("train")
    if rl.data == "covered":
        return covered_problems(ctx)
    problems, skipped = load_problems(rl.data, ctx.config.data.on_invalid)
    if skipped:
        console.print(f"[yellow]rl.data: skipped {len(skipped)} invalid rows: {', '.join(skipped[:10])}")
    return problems


def covered_problems(ctx: RunContext) -> list[Problem]:
    """The distinct problems with at least one kept row in the run's filter stage, in the stage's order
    (an error naming the stage when it has not finished or kept nothing)."""
    seen: dict[str, Problem] = {}
    for r in read_stage_records(ctx.run_dir, filter_stage.NAME, FilterResult):
        if r.kept and r.problem_id not in seen:
            seen[r.problem_id] = r.as_problem()
    if not seen:
        raise DataError(
            f"rl.data: covered: the filter stage in {ctx.run_dir} kept no intervention, so no problem "
            "is covered; train RL on data.train (rl.data: null) or on a source instead"
        )
    return list(seen.values())


def describe_data(rl: RLConfig) -> str:
    """Where the RL problems came from, for the manifest."""
    if rl.data is None:
        return "data.train"
    if rl.data == "covered":
        return "covered"
    source = rl.data
    if source.kind == "hf":
        return f"hf:{source.name}[{source.split}]"
    if source.kind == "arithmetic":
        return f"arithmetic(size={source.size}, seed={source.seed})"
    return f"{source.kind}:{source.path}"


# ----------------------------------------------------------------------------- counts


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _mean_last(records: list[dict[str, Any]], key: str, share: float) -> float | None:
    if not records:
        return None
    by_step = {r["step"]: r for r in records}  # a step logged twice (resume) counts once
    ordered = [by_step[s] for s in sorted(by_step)]
    tail = ordered[-max(1, math.ceil(share * len(ordered))) :]
    return _mean([r.get(key) for r in tail])

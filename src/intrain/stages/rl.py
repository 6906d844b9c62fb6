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

import functools
import gc
import json
import math
import os
import random
from pathlib import Path
from typing import Any

from intrain.config import ModelConfig, RLConfig, fingerprint
from intrain.data import Problem
from intrain.progress import console
from intrain.rewards import CorrectnessReward
from intrain.stages.common import RunContext, user_message
from intrain.steps import DEFAULT_SEPARATOR, split_substeps
from intrain.store import Stage

NAME = "rl"
HINT_HEADER = "\n\nHere is the beginning of a solution:\n"
LOG_NAME = "log.jsonl"

# TRL metric name -> our log.jsonl key.
_LOGGED = {
    "reward": "reward",
    # TRL: share of completions whose group's reward std is ~0 (torch.isclose), averaged per step.
    # Every group has `num_generations` completions, so this is exactly the share of groups whose
    # rewards are all equal, i.e. whose advantages r - mean(r) are all zero.
    "frac_reward_zero_std": "zero_adv_ratio",
    "reward_std": "reward_std",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "clipped_ratio",
    "entropy": "entropy",
    "step_time": "step_time",
    "learning_rate": "learning_rate",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "epoch": "epoch",
    "correctness/no_answer_ratio": "no_answer_ratio",
    "correctness/ungradable_ratio": "ungradable_ratio",
}


def run(ctx: RunContext, label: str = NAME, init_model: str | None = None, init_adapter: str | None = None,
        hint_share: float | None = None) -> Stage:
    """GRPO from `init_model` (+ `init_adapter`), or by default from the configured policy
    (`model.path` + `model.adapter`), on the train problems; writes the stage folder `label`."""
    cfg = ctx.config
    rl = cfg.rl
    if hint_share is not None:
        if not 0.0 <= hint_share <= 1.0:
            raise ValueError(f"hint_share must be in [0, 1], got {hint_share}")
        rl = rl.model_copy(update={"hint_share": float(hint_share)})
    if init_model is None:
        if init_adapter is not None:
            raise ValueError("init_adapter needs init_model")
        init_model, init_adapter = cfg.model.path, cfg.model.adapter
    stage = Stage(ctx.run_dir, label,
                  fingerprint({"init_model": init_model, "init_adapter": init_adapter,
                               "upstream": _upstream_hash(init_model)},
                              rl.model_dump(mode="json", exclude={"enabled"}), cfg.model, cfg.data.train,
                              cfg.data.prompt_template),
                  force=ctx.force)
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


# ----------------------------------------------------------------------------- training


def want_vllm(setting: str) -> bool:
    """vLLM colocate generation: 'always'; 'auto' when CUDA is there and vllm imports; else HF generate."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def batch_layout(rl: RLConfig, world_size: int = 1) -> tuple[int, int]:
    """(per-device micro-batch, gradient accumulation steps), both counted in completions as TRL
    counts them: per_device x world x accumulation = prompts_per_step x group_size."""
    total = rl.prompts_per_step * rl.group_size
    per_device = rl.per_device_batch_size or rl.group_size
    if total % (per_device * world_size):
        raise ValueError(f"prompts_per_step x group_size ({total}) is not divisible by per_device_batch_size "
                         f"({per_device}) x processes ({world_size})")
    return per_device, total // (per_device * world_size)


def grpo_args(rl: RLConfig, model: ModelConfig, output_dir: Path, device: str, use_vllm: bool = False,
              world_size: int = 1):
    """The TRL GRPOConfig of the paper's recipe for `rl`."""
    import torch
    from trl import GRPOConfig

    per_device, accumulation = batch_layout(rl, world_size)
    extra: dict[str, Any] = {}
    if use_vllm:
        extra.update(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=rl.vllm_gpu_memory_utilization,
                     vllm_max_model_length=model.max_model_len)
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=rl.steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        # One generation batch (= one optimizer step's prompts x group) per optimizer step, used once:
        # strictly on-policy, so the PPO ratio is 1 and clipping never binds.
        steps_per_generation=accumulation,
        num_iterations=1,
        num_generations=rl.group_size,
        max_completion_length=rl.max_completion_tokens,
        temperature=rl.temperature,
        top_p=rl.top_p,
        top_k=0,
        learning_rate=rl.learning_rate,
        lr_scheduler_type=rl.lr_scheduler,
        warmup_steps=rl.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=rl.weight_decay,
        max_grad_norm=rl.max_grad_norm,
        beta=0.0,  # no KL term, so no reference model is loaded
        scale_rewards="none",  # advantage = r - group mean (paper; Dr. GRPO style)
        loss_type=rl.loss_type,
        mask_truncated_completions=rl.mask_truncated_completions,
        chat_template_kwargs=model.chat_template_kwargs or None,
        activation_checkpointing=rl.gradient_checkpointing,
        remove_unused_columns=False,  # keep `answer`/`problem_id` for the reward
        shuffle_dataset=True,
        logging_steps=1,
        save_strategy="steps",
        save_steps=rl.save_steps,
        save_total_limit=2,
        report_to="none",
        seed=rl.seed,
        use_cpu=device == "cpu",
        bf16=device == "cuda" and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        **extra,
    )


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: Trainer writes trainer_state.json last, so a folder without it
    was cut off mid-save and is skipped (transformers' own get_last_checkpoint would pick it)."""
    found = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(suffix), path))
    return max(found)[1] if found else None


def train_grpo(rows: list[dict[str, Any]], rl: RLConfig, model_cfg: ModelConfig, init_model: str,
               init_adapter: str | None, output_dir: Path, reward: CorrectnessReward) -> dict[str, Any]:
    """GRPO on `rows`; logs to output_dir/log.jsonl, checkpoints to output_dir/checkpoints, resumes
    from the newest complete checkpoint, saves the final HF folder at output_dir/model."""
    import torch
    from datasets import Dataset

    from intrain.models import load_for_training, pick_device

    if len(rows) < rl.prompts_per_step:
        raise ValueError(f"rl: {len(rows)} training problems, fewer than prompts_per_step={rl.prompts_per_step}")
    device = pick_device(model_cfg.device)
    vllm = want_vllm(rl.use_vllm)
    if vllm and device != "cuda":
        raise ValueError("rl.use_vllm: vLLM generation needs a CUDA device")
    model, tokenizer = load_for_training(init_model, device, model_cfg.dtype, init_adapter)
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    checkpoints = output_dir / "checkpoints"
    args = grpo_args(rl, model_cfg, checkpoints, device, use_vllm=vllm, world_size=world)

    resume = last_checkpoint(checkpoints)
    resumed_from = int(resume.name.removeprefix("checkpoint-")) if resume else 0
    log_path = output_dir / LOG_NAME
    _trim_log(log_path, resumed_from)
    trainer = _trainer_class()(model=model, reward_funcs=[reward], args=args,
                               train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                               callbacks=[StepLog(log_path, reward)])
    # Resume (transformers Trainer._inner_training_loop / _run_epoch): Trainer reloads weights,
    # optimizer, scheduler and trainer_state (global_step, log history) from the checkpoint, starts
    # at epoch global_step // steps_per_epoch, calls set_epoch(epoch) on the sampler (our
    # EpochRepeatSampler: prompt order = permutation seeded by seed + epoch, see below) and
    # fast-forwards past the batches of the steps already done in that epoch (accelerate's
    # skip_first_batches), so the resumed run sees the prompts the uninterrupted one would have.
    # The python/numpy/torch/CUDA RNG states saved in the checkpoint's rng_state.pth are restored
    # right after the skip (Trainer._load_rng_state), so rollout sampling continues the interrupted
    # run's random streams. TRL regenerates completions on the first resumed step (its rollout
    # buffer is not checkpointed; with one generation per optimizer step nothing is lost).
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    target = output_dir / "model"
    trainer.save_model(str(target))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(target))
    steps = trainer.state.global_step
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"path": str(target), "steps": steps, "resumed_from_step": resumed_from, "vllm": vllm}


@functools.cache
def _trainer_class():
    """GRPOTrainer whose prompt order is a function of (seed, epoch) only.

    TRL's RepeatSampler shuffles with one generator seeded once and advanced every epoch, and has
    no set_epoch; a run resumed in epoch k > 0 builds a fresh sampler and would replay epoch 0's
    order (checked: resuming at step 3 of 4 problems x 2 per step trained epoch 0's prompts again).
    Reseeding per epoch makes the order of every epoch reproducible from the checkpoint alone.
    """
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    class EpochRepeatSampler(RepeatSampler):
        def set_epoch(self, epoch: int) -> None:  # accelerate's DataLoaderShard.set_epoch forwards here
            if self.shuffle:
                self.generator.manual_seed((self.seed or 0) + epoch)

    class Trainer(GRPOTrainer):
        def _get_train_sampler(self, dataset=None):
            base = super()._get_train_sampler(dataset)
            return EpochRepeatSampler(data_source=base.data_source, mini_repeat_count=base.mini_repeat_count,
                                      batch_size=base.batch_size, repeat_count=base.repeat_count,
                                      shuffle=base.shuffle, seed=base.seed)

    return Trainer


@functools.cache
def _make_step_log_class():
    from transformers import TrainerCallback

    class _StepLog(TrainerCallback):
        """Appends one JSON line per optimizer step to log.jsonl (main process only)."""

        def __init__(self, path: Path, reward: CorrectnessReward | None = None) -> None:
            self.path = Path(path)
            self.reward = reward

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return  # eval logs and the end-of-training summary carry no reward
            record: dict[str, Any] = {"step": state.global_step}
            record.update({ours: logs[theirs] for theirs, ours in _LOGGED.items() if theirs in logs})
            batch = self.reward.take_last_batch() if self.reward is not None else None
            if batch is not None and batch["problem_ids"] is not None:
                # Correct rollouts per prompt group, in sampling order (TRL keeps each group contiguous).
                size = args.num_generations
                ids, rewards = batch["problem_ids"], batch["rewards"]
                record["groups"] = [[ids[i], int(sum(rewards[i:i + size]))] for i in range(0, len(ids), size)]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    return _StepLog


def StepLog(path: Path, reward: CorrectnessReward | None = None):  # noqa: N802 - a lazy class
    """The log.jsonl callback (built lazily: importing transformers costs seconds)."""
    return _make_step_log_class()(path, reward)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trim_log(path: Path, keep_through: int) -> None:
    """Drop log lines of steps after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    kept = [r for r in read_log(path) if r.get("step", 0) <= keep_through]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _upstream_hash(init_model: str) -> str | None:
    """The config hash of the stage that wrote `init_model` (e.g. <run>/sft/model), so that redoing
    that stage invalidates this one although the model path is unchanged."""
    folder = Path(os.path.expanduser(init_model))
    if not folder.is_dir():
        return None
    manifest = folder.parent / "manifest.json"
    try:
        return json.loads(manifest.read_text()).get("config_hash")
    except (OSError, ValueError):
        return None


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

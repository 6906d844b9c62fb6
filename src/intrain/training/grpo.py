"""GRPO with TRL's GRPOTrainer: the paper's recipe as a GRPOConfig, a sampler whose prompt order
survives a resume, and one log.jsonl line per optimizer step.

    <output_dir>/log.jsonl       one line per optimizer step (steps past the resume point dropped)
    <output_dir>/../metrics.jsonl the same numbers (no groups), appended: the run's metrics in one place
    <output_dir>/checkpoints/    TRL checkpoints every `rl.save_steps`; a re-run resumes from the newest complete one
    <output_dir>/model/          the final HF folder

Under `accelerate launch` (docs/SCALING.md) every rank runs this module: each binds its own GPU before
loading, rank 0 alone trims and appends log.jsonl (with every rank's rollout groups gathered into it),
and no rank returns before the final model is whole on disk.
"""

from __future__ import annotations

import functools
import gc
import json
import shutil
from pathlib import Path
from typing import Any, cast

from intrain.config import ConfigError, ModelConfig, RLConfig
from intrain.progress import quiet_training_libraries
from intrain.rewards import CorrectnessReward
from intrain.store import append_metrics, metrics_record, metrics_trackers
from intrain.training.args import bind_cuda_device, is_main_process, num_processes, trainer_args
from intrain.training.checkpoints import last_complete_checkpoint
from intrain.training.engine_rollouts import engine_rollout_func

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


def want_vllm(setting: str) -> bool:
    """vLLM generation (colocated or on a server, see `rl.vllm_mode`): 'always'; 'auto' when CUDA is there
    and vllm imports (TRL imports it in server mode too, for the weight transfer); else the HF engine or
    transformers generate."""
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
        raise ValueError(
            f"prompts_per_step x group_size ({total}) is not divisible by per_device_batch_size "
            f"({per_device}) x processes ({world_size})"
        )
    return per_device, total // (per_device * world_size)


def grpo_args(
    rl: RLConfig,
    model: ModelConfig,
    output_dir: Path,
    device: str,
    use_vllm: bool = False,
    world_size: int = 1,
    keep_checkpoints: int = 0,
    report_to: tuple[str, ...] = (),
):
    """The TRL GRPOConfig of the paper's recipe for `rl`; `use_vllm` generates with vLLM where
    `rl.vllm_mode` says, else with our engine (one process) or transformers' generate (a launch);
    `report_to`: TRL's trackers (output.report_to)."""
    from trl import GRPOConfig

    per_device, accumulation = batch_layout(rl, world_size)
    extra: dict[str, Any] = {}
    if use_vllm and rl.vllm_mode == "colocate":
        extra.update(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=rl.vllm_gpu_memory_utilization,
            vllm_max_model_length=model.max_model_len,
        )
    elif use_vllm:
        # The server's memory share, context length and tensor parallelism are its own command line's
        # (docs/SCALING.md); TRL ignores its colocate-only fields in server mode, so none is set here.
        extra.update(
            use_vllm=True,
            vllm_mode="server",
            vllm_server_base_url=rl.vllm_server_base_url,
            vllm_server_timeout=rl.vllm_server_timeout,
        )
    common = trainer_args(rl, output_dir, device, per_device, accumulation, keep_checkpoints)
    common["report_to"] = list(report_to) or "none"
    return GRPOConfig(
        **common,
        max_steps=rl.steps,
        # One generation batch (= one optimizer step's prompts x group) per optimizer step, used once:
        # strictly on-policy, so the PPO ratio is 1 and clipping never binds.
        steps_per_generation=accumulation,
        num_iterations=1,
        num_generations=rl.group_size,
        max_completion_length=rl.max_completion_tokens,
        temperature=rl.temperature,
        top_p=rl.top_p,
        top_k=0,
        lr_scheduler_type=rl.lr_scheduler,
        max_grad_norm=rl.max_grad_norm,
        beta=0.0,  # no KL term, so no reference model is loaded
        scale_rewards="none",  # advantage = r - group mean (paper; Dr. GRPO style)
        loss_type=rl.loss_type,
        mask_truncated_completions=rl.mask_truncated_completions,
        chat_template_kwargs=model.chat_template_kwargs or None,
        remove_unused_columns=False,  # keep `answer`/`problem_id` for the reward
        shuffle_dataset=True,
        **extra,
    )


def train_grpo(
    rows: list[dict[str, Any]],
    rl: RLConfig,
    model_cfg: ModelConfig,
    init_model: str,
    init_adapter: str | None,
    output_dir: Path,
    reward: CorrectnessReward,
    keep_checkpoints: int = 0,
) -> dict[str, Any]:
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
    if rl.vllm_mode == "server" and not vllm:
        # Falling back to transformers' generate would leave the started server idle and run ~10x slower.
        raise ConfigError(
            "rl.vllm_mode: server, but vLLM is not usable in the trainer (rl.use_vllm: auto needs CUDA and "
            "vllm importable here; install the 'gpu' extra)"
        )
    if device == "cuda":
        bind_cuda_device()
    checkpoints = output_dir / "checkpoints"
    target = output_dir / "model"
    resume = last_complete_checkpoint(checkpoints)
    resumed_from = int(resume.name.removeprefix("checkpoint-")) if resume else 0
    if resume is not None and resumed_from >= rl.steps:
        # Killed after the final checkpoint (Trainer writes one at the last step) and before the model was
        # saved. Resuming there, Trainer would run one step past max_steps when the steps end mid-epoch (it
        # checks the limit only after a step); the checkpoint already holds the final weights.
        _save_final_from_checkpoint(resume, target)
        return {"path": str(target), "steps": resumed_from, "resumed_from_step": resumed_from, "vllm": vllm}
    model, tokenizer = load_for_training(init_model, device, model_cfg.dtype, init_adapter, model_cfg.train_adapter)
    args = grpo_args(
        rl,
        model_cfg,
        checkpoints,
        device,
        use_vllm=vllm,
        world_size=num_processes(),
        keep_checkpoints=keep_checkpoints,
        report_to=metrics_trackers(output_dir.parent),  # output_dir is the stage folder RUN/<label>
    )
    log_path = output_dir / LOG_NAME
    if is_main_process():  # the one writer of log.jsonl (StepLog appends on rank 0 only)
        _trim_log(log_path, resumed_from)
    # Without vLLM, a single process samples its rollouts with our engine (training/engine_rollouts.py).
    rollout_func = engine_rollout_func(rl, model_cfg) if not vllm and num_processes() == 1 else None
    with quiet_training_libraries():
        trainer = _trainer_class()(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            rollout_func=rollout_func,
            callbacks=[StepLog(log_path, reward), _make_metrics_log_class()(output_dir.parent, output_dir.name)],
        )
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
    with quiet_training_libraries():
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.save_model(str(target))  # gathers ZeRO-3 / FSDP shards; rank 0 writes
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(target))
    # Other ranks go on to mark the stage complete: not before rank 0 has written the whole model.
    trainer.accelerator.wait_for_everyone()
    steps = trainer.state.global_step
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"path": str(target), "steps": steps, "resumed_from_step": resumed_from, "vllm": vllm}


def _save_final_from_checkpoint(checkpoint: Path, target: Path) -> None:
    """The final HF folder from a checkpoint's own: Trainer saves every checkpoint's weights as a whole HF
    model (gathered from ZeRO-3 shards with zero3_save_16bit_model, or as FSDP's full state dict) beside
    its optimizer state. Rank 0 writes; no rank returns before the folder is whole."""
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer

    state = PartialState()  # a process group across the launch's ranks, or a no-op in a plain run
    if state.is_main_process and (checkpoint / "adapter_config.json").is_file():  # model.train_adapter
        target.mkdir(parents=True, exist_ok=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copyfile(checkpoint / name, target / name)
        AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True).save_pretrained(str(target))
    elif state.is_main_process:
        model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype="auto", local_files_only=True)
        model.save_pretrained(str(target))
        AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True).save_pretrained(str(target))
    state.wait_for_everyone()


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
            # TRL annotates this as returning a Sampler; GRPOTrainer's always is a RepeatSampler.
            base = cast(RepeatSampler, super()._get_train_sampler(dataset))
            return EpochRepeatSampler(
                data_source=base.data_source,
                mini_repeat_count=base.mini_repeat_count,
                batch_size=base.batch_size,
                repeat_count=base.repeat_count,
                shuffle=base.shuffle,
                seed=base.seed,
            )

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
            if not logs or "reward" not in logs:
                return  # eval logs and the end-of-training summary carry no reward
            batch = self.reward.take_last_batch() if self.reward is not None else None
            # Each rank graded only its own slice of the step's rollouts. Every rank logs at the same step with
            # the same (already gathered) metrics, so all of them reach this collective, or none does.
            batches = _gather_objects(batch) if args.world_size > 1 else [batch]
            if not state.is_world_process_zero:
                return
            record: dict[str, Any] = {"step": state.global_step, **step_metrics(logs)}
            groups = step_groups(batches, args.num_generations)
            if groups is not None:
                record["groups"] = groups
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    return _StepLog


@functools.cache
def _make_metrics_log_class():
    from transformers import TrainerCallback

    class _MetricsLog(TrainerCallback):
        """Appends each optimizer step's numbers to the run's metrics.jsonl (main process only). A step redone
        after a resume is appended again: the last line of a (stage, step) is the one that counts."""

        def __init__(self, run_dir: Path, stage: str) -> None:
            self.run_dir = Path(run_dir)
            self.stage = stage

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs and state.is_world_process_zero:
                append_metrics(self.run_dir, metrics_record(self.stage, "step", step_metrics(logs), state.global_step))

    return _MetricsLog


def step_metrics(logs: dict[str, Any]) -> dict[str, Any]:
    """TRL's step log under our names (`_LOGGED`)."""
    return {ours: logs[theirs] for theirs, ours in _LOGGED.items() if theirs in logs}


def step_groups(batches: list[dict[str, Any] | None], group_size: int) -> list[list[Any]] | None:
    """[problem_id, correct rollouts] per prompt group, in sampling order, from the ranks' graded batches in
    rank order (TRL's order: it gathers rewards the same way and keeps each group contiguous); None when a
    rank graded nothing or without problem ids (a partial list would read as the whole step)."""
    if not batches or any(b is None or b["problem_ids"] is None for b in batches):
        return None
    ids = [i for b in batches if b is not None for i in b["problem_ids"]]
    rewards = [r for b in batches if b is not None for r in b["rewards"]]
    return [[ids[i], int(sum(rewards[i : i + group_size]))] for i in range(0, len(ids), group_size)]


def _gather_objects(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (a collective: every rank must call it)."""
    from accelerate.utils import gather_object

    return gather_object([obj])


def StepLog(path: Path, reward: CorrectnessReward | None = None):
    """The log.jsonl callback (built lazily: importing transformers costs seconds)."""
    return _make_step_log_class()(path, reward)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The step log's records. The log is appended to line by line, so a kill (or a full disk) can
    leave its last line torn: that line is dropped (its step is past the last checkpoint, so it is
    redone); a bad line anywhere else is corruption and raises."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return records


def _trim_log(path: Path, keep_through: int) -> None:
    """Drop log lines of steps after the checkpoint we resume from (they will be redone)."""
    from intrain.store import atomic_write_text

    if not path.exists():
        return
    kept = [r for r in read_log(path) if r.get("step", 0) <= keep_through]
    # Atomic: a kill mid-write must not leave a log that a re-run can no longer parse.
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

"""What SFT and GRPO set the same way on their TRL configs: batching, schedule warm-up,
checkpointing, logging, seed and device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from intrain.config import RLConfig, SFTConfig


def num_processes() -> int:
    """Training processes (`accelerate launch` / torchrun set WORLD_SIZE; a plain run is one)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    """Whether this is rank 0 of a launch (RANK, set by `accelerate launch` / torchrun), or a plain run.

    Readable before the trainer exists: files outside the Trainer's own (our step log) are written by
    rank 0 alone, as Trainer writes its checkpoints, so that ranks never rewrite one file together.
    """
    return os.environ.get("RANK", "0").strip() in ("", "0")


def bind_cuda_device() -> None:
    """Make this rank's GPU (LOCAL_RANK) the current CUDA device; nothing outside a launch or without CUDA.

    Call before loading a model: the loader moves it to "cuda", i.e. the current device, and only the
    Trainer's Accelerator would set that to LOCAL_RANK, after the load. Without this every rank of an
    8-GPU launch would put its full copy (16 GB of float32 weights for a 4B model) on GPU 0.
    """
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(local_rank))


def trainer_args(
    cfg: SFTConfig | RLConfig,
    output_dir: Path,
    device: str,
    per_device: int,
    accumulation: int,
    keep_checkpoints: int = 0,
) -> dict[str, Any]:
    """TrainingArguments fields common to both trainers, from the fields SFTConfig and RLConfig share.

    A checkpoint every `cfg.save_steps` optimizer steps (the newest max(1, keep_checkpoints) kept:
    Trainer deletes older ones only after the new one is whole), one log entry per step,
    no reporting integrations, data loading in the main process.
    """
    import torch

    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        activation_checkpointing=cfg.gradient_checkpointing,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=max(1, keep_checkpoints),
        logging_steps=1,
        report_to="none",
        seed=cfg.seed,
        use_cpu=device == "cpu",
        bf16=device == "cuda" and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
    )

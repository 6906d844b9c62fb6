"""Supervised fine-tuning on pre-tokenised rows with TRL's SFTTrainer.

Rows carry `input_ids` and explicit `labels` (-100 on the prompt). Handing TRL token ids rather than
text is what keeps it from appending an EOS: the InT target (own prefix + intervention) must end
without an end-of-turn token, or the model would learn to stop right after the intervention.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from intrain.config import ModelConfig, SFTConfig
from intrain.engines.base import Request, render_ids
from intrain.progress import quiet_training_libraries
from intrain.stages.common import user_message
from intrain.store import atomic_write_text, metrics_trackers
from intrain.training.args import bind_cuda_device, is_main_process, num_processes, trainer_args
from intrain.training.checkpoints import last_complete_checkpoint

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


def sft_row(
    tokenizer,
    prompt_template: str,
    problem: str,
    target: str,
    close_turn: bool = False,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> dict[str, list[int]]:
    """problem -> target as token ids, the prompt (chat template + generation prompt) loss-masked.

    InT rows leave the turn open (`close_turn=False`): nothing, no end-of-turn and no EOS, follows
    the target. Baselines that clone whole solutions close the turn with the template's own
    end-of-turn tokens, which are trained on so the model learns to stop.
    """
    prompt_ids = render_ids(tokenizer, Request(messages=user_message(prompt_template, problem)), chat_template_kwargs)
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if close_turn:
        target_ids = target_ids + end_of_turn_ids(tokenizer, target, chat_template_kwargs)
    return {"input_ids": prompt_ids + target_ids, "labels": [-100] * len(prompt_ids) + target_ids}


def end_of_turn_ids(tokenizer, target: str, chat_template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """The tokens a chat template writes after an assistant message (e.g. `<|im_end|>\n`)."""
    marker = "\x00END-OF-TARGET\x00"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}],
        tokenize=False,
        **(chat_template_kwargs or {}),
    )
    if marker not in text:
        return [tokenizer.eos_token_id]
    suffix = text[text.index(marker) + len(marker) :]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    return ids or [tokenizer.eos_token_id]


def train_sft(
    rows: list[dict[str, list[int]]],
    model_cfg: ModelConfig,
    sft: SFTConfig,
    base_path: str,
    base_adapter: str | None,
    output_dir: Path,
    merge_lora: bool = True,
    keep_checkpoints: int = 0,
    train_adapter: bool = False,
) -> dict[str, Any]:
    """Fine-tune `base_path` (+ merged `base_adapter`) on `rows`; save an HF folder at output_dir/model.

    Checkpoints go to output_dir/checkpoints every `sft.save_steps` steps and a re-run resumes from
    the newest complete one. With LoRA and merge_lora=False only the adapter is saved (output_dir/adapter).
    With `train_adapter`, `base_adapter` itself trains and output_dir/model is an adapter folder that
    names its base (`model.train_adapter`).
    TRL reports to the trackers registered for output_dir's run (output.report_to), if any.
    """
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from intrain.models import load_for_training, pick_device

    device = pick_device(model_cfg.device)
    if device == "cuda":
        bind_cuda_device()  # each rank of a launch loads onto its own GPU, not all onto GPU 0
    model, tokenizer = load_for_training(base_path, device, model_cfg.dtype, base_adapter, train_adapter)
    tokenizer.padding_side = "right"
    accumulation = max(1, sft.effective_batch_size // (sft.per_device_batch_size * num_processes()))
    checkpoints = output_dir / "checkpoints"
    common = trainer_args(sft, checkpoints, device, sft.per_device_batch_size, accumulation, keep_checkpoints)
    # A stage folder's parent is its run directory (stages/sft.py: output_dir = RUN/<stage>).
    common["report_to"] = list(metrics_trackers(output_dir.parent)) or "none"
    args = TRLSFTConfig(
        **common,
        num_train_epochs=sft.epochs,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": sft.min_lr_rate},
        max_length=sft.max_length,
        train_sampling_strategy="group_by_length" if sft.group_by_length else "random",
    )
    peft_config = None
    if sft.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=sft.lora.r,
            lora_alpha=sft.lora.alpha,
            lora_dropout=sft.lora.dropout,
            target_modules=sft.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    # An explicit path, not resume_from_checkpoint=True: Trainer would pick a half-written newest folder.
    resume = last_complete_checkpoint(checkpoints)
    with quiet_training_libraries():
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    tokenizer.padding_side = "left"
    # Trainer types `model` as `PreTrainedModel | nn.Module | None`; SFTTrainer holds the model it was
    # given, wrapped in a PeftModel when it got a peft_config.
    if sft.lora is not None and not merge_lora:
        target = output_dir / "adapter"
        if is_main_process():
            cast("PeftModel", trainer.model).save_pretrained(str(target))
    elif sft.lora is not None:
        target = output_dir / "model"
        with quiet_training_libraries():  # PEFT's merge reads the deprecated alias too
            merged = cast("PeftModel", trainer.model).merge_and_unload()
        if is_main_process():
            cast("PreTrainedModel", merged).save_pretrained(str(target))
    else:
        target = output_dir / "model"
        # gathers ZeRO-3 / FSDP shards; rank 0 writes. A PeftModel (train_adapter) saves its adapter.
        trainer.save_model(str(target))
    log = trainer.state.log_history
    if is_main_process():
        if target.name == "model":
            tokenizer.save_pretrained(str(target))
        atomic_write_text(output_dir / "train_log.jsonl", "".join(json.dumps(entry) + "\n" for entry in log))
    # Other ranks go on to mark the stage complete: not before rank 0 has written the whole model.
    trainer.accelerator.wait_for_everyone()
    losses = [e["loss"] for e in log if "loss" in e]
    return {
        "path": str(target),
        "steps": trainer.state.global_step,
        "resumed": resume is not None,
        "train_loss": result.training_loss if math.isfinite(result.training_loss) else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }

"""GRPO rollouts from our HF engine (`training/engine_rollouts.py`), as TRL's `rollout_func`."""

from __future__ import annotations

from types import SimpleNamespace

from intrain.config import ModelConfig, RLConfig
from intrain.engines import Request, render_ids
from intrain.training.engine_rollouts import engine_rollout_func


def fake_trainer(model, tokenizer, step: int):
    """What the rollout function reads of a GRPOTrainer."""
    return SimpleNamespace(
        model=model,
        processing_class=tokenizer,
        accelerator=SimpleNamespace(unwrap_model=lambda m: m),
        state=SimpleNamespace(global_step=step),
    )


def test_one_completion_per_prompt_copy_in_order_and_the_model_left_training(tiny_generator):
    model, tok = tiny_generator.model, tiny_generator.tokenizer
    rollout = engine_rollout_func(RLConfig(max_completion_tokens=6, temperature=1.0), ModelConfig(path="x"))
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    other = [{"role": "user", "content": "What is 7 - 1? Think first."}]
    prompts = [question] * 3 + [other] * 3  # TRL passes each prompt group_size times
    model.train()
    out = rollout(prompts, fake_trainer(model, tok, step=0))
    assert model.training  # handed back as the trainer left it

    assert set(out) == {"prompt_ids", "completion_ids", "logprobs"} and out["logprobs"] is None
    assert out["prompt_ids"] == [render_ids(tok, Request(messages=p)) for p in prompts]
    assert len(out["completion_ids"]) == 6 and all(1 <= len(c) <= 6 for c in out["completion_ids"])
    # The copies of a prompt are separate samples.
    assert len({tuple(c) for c in out["completion_ids"][:3]}) > 1


def test_the_step_seeds_the_samples(tiny_generator):
    model, tok = tiny_generator.model, tiny_generator.tokenizer
    rollout = engine_rollout_func(RLConfig(max_completion_tokens=8, seed=3), ModelConfig(path="x"))
    prompts = [[{"role": "user", "content": "Name a number."}]] * 4
    step2 = rollout(prompts, fake_trainer(model, tok, step=2))["completion_ids"]
    assert rollout(prompts, fake_trainer(model, tok, step=2))["completion_ids"] == step2  # a resumed step
    assert rollout(prompts, fake_trainer(model, tok, step=3))["completion_ids"] != step2

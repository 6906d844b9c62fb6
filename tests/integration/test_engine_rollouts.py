"""GRPO rollouts from our HF engine (`training/engine_rollouts.py`), as TRL's `rollout_func`."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from intrain.config import ModelConfig, RLConfig
from intrain.engines import Request, render_ids
from intrain.models import load_model_and_tokenizer
from intrain.training.engine_rollouts import engine_rollout_func, merged_lora


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


def lora_policy(model_dir: str):
    """The tiny model as a trainable PEFT LoRA policy whose adapter changes its outputs (B random too)."""
    from peft import LoraConfig, get_peft_model

    base, tok = load_model_and_tokenizer(model_dir, device="cpu")
    torch.manual_seed(0)
    targets = ["q_proj", "v_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    return model.eval(), tok


def test_merged_lora_gives_the_adapters_outputs_and_hands_back_the_very_same_weights(tiny_model_dir):
    model, tok = lora_policy(tiny_model_dir)
    ids = torch.tensor([tok("What is 2 + 3? Then 5 * 4.")["input_ids"]])
    weights = {n: (p, p.detach().clone()) for n, p in model.named_parameters() if "base_layer" in n}
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
        with merged_lora(model):
            lora_layers = [m for m in model.modules() if hasattr(m, "merged_adapters")]
            assert lora_layers and all(m.merged for m in lora_layers)
            merged = model(input_ids=ids).logits
        again = model(input_ids=ids).logits
    assert not torch.allclose(unmerged, plain, atol=1e-3)  # the adapter matters here
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert torch.equal(again, unmerged)
    assert not any(m.merged for m in lora_layers)
    after = dict(model.named_parameters())
    for name, (param, value) in weights.items():
        assert after[name] is param and torch.equal(param, value), name


def test_a_lora_policy_samples_with_its_adapter_and_still_trains_after(tiny_model_dir, monkeypatch):
    import contextlib

    from intrain.training import engine_rollouts

    model, tok = lora_policy(tiny_model_dir)
    rollout = engine_rollout_func(RLConfig(max_completion_tokens=8, seed=1), ModelConfig(path="x"))
    prompts = [[{"role": "user", "content": "What is 2 + 3?"}]] * 4
    merged = rollout(prompts, fake_trainer(model, tok, step=0))["completion_ids"]
    with monkeypatch.context() as patch:  # the same step sampled through the unmerged layers
        patch.setattr(engine_rollouts, "merged_lora", lambda m: contextlib.nullcontext())
        unmerged = rollout(prompts, fake_trainer(model, tok, step=0))["completion_ids"]
        with model.disable_adapter():
            plain = rollout(prompts, fake_trainer(model, tok, step=0))["completion_ids"]
    assert merged == unmerged != plain
    # Gradients still reach the adapter, and only the adapter.
    model.train()
    ids = torch.tensor([render_ids(tok, Request(messages=prompts[0])) + merged[0]])
    model(input_ids=ids, labels=ids).loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)

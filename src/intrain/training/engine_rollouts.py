"""GRPO rollouts from our HF engine, as TRL's ``rollout_func``.

Without vLLM, TRL samples a step's rollouts with ``model.generate``: every row prefilled on its own
(the group's G copies of a prompt included), the batch decoded until its longest row ends, the KV
cache copied at every step, transformers' sampling chain. The engine (`intrain.engines.hf`) prefills
each distinct prompt once, lets finished rows leave, grows the cache in place and draws with its own
sampler. Used for single-process training without vLLM (the CPU path, one GPU); multi-process
launches keep TRL's path, which gathers sharded (FSDP / ZeRO-3) weights for generation.

A policy trained as a LoRA adapter (`model.train_adapter`) samples with the adapter folded into its
base weights (`merged_lora`): unmerged, every adapted layer runs two more matrix products and PEFT's
bookkeeping at each decode step; merged, the demo's GRPO steps took about a fifth less time on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from intrain.config import ModelConfig, RLConfig
from intrain.engines.base import derive_seed


def engine_rollout_func(rl: RLConfig, model_cfg: ModelConfig):
    """A TRL ``rollout_func``: one completion per prompt it is given (TRL passes each prompt
    ``num_generations`` times), sampled at the run's temperature and top-p with a seed drawn from
    ``rl.seed`` and the step, so a resumed run samples the steps it redoes as the first run did."""

    def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        from intrain.engines import HFGenerator, Request, SamplingParams, render_ids

        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        engine = HFGenerator(
            model,
            trainer.processing_class,
            batch_size=model_cfg.batch_size,
            chat_template_kwargs=model_cfg.chat_template_kwargs,
        )
        requests = [Request(prompt=p) if isinstance(p, str) else Request(messages=list(p)) for p in prompts]
        sampling = SamplingParams(
            temperature=rl.temperature,
            top_p=rl.top_p,
            max_tokens=rl.max_completion_tokens,
            seed=derive_seed(rl.seed, trainer.state.global_step),
        )
        try:
            with merged_lora(model):
                outputs = engine.generate(requests, sampling)
        finally:
            model.train(was_training)
        return {
            "prompt_ids": [render_ids(engine.tokenizer, r, engine.chat_template_kwargs) for r in requests],
            "completion_ids": [out[0].token_ids for out in outputs],
            # None: the loss takes its old log-probabilities from the trainer's own forward pass, as it
            # does after `generate` (these would only matter for vLLM's importance-sampling correction).
            "logprobs": None,
        }

    return rollout


@contextmanager
def merged_lora(model: Any) -> Iterator[None]:
    """Inside the block, each plain LoRA linear layer of a PEFT `model` runs as one matrix product with
    base weight + its active adapters' deltas, a new tensor; on exit the layer gets its own weight back
    (the same tensor, bit for bit: PEFT's merge_adapter / unmerge_adapter add and subtract the delta in
    place, which leaves a rounding residue in bf16 at every step). Costs one copy of the adapted weights
    while it lasts. Other layers (no LoRA, variants such as DoRA) run as they are."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear

    swapped: list[tuple[Any, Any, Any, list[str]]] = []
    try:
        with torch.no_grad():
            for layer in model.modules():
                if not isinstance(layer, LoraLinear) or layer.merged or layer.disable_adapters:
                    continue
                names = [a for a in layer.active_adapters if a in layer.lora_A]
                if not names or any(a in layer.lora_variant for a in names):
                    continue
                base: Any = layer.get_base_layer()
                weight = base.weight
                merged = weight.detach().clone()
                for name in names:
                    merged += layer.get_delta_weight(name).to(merged.dtype)
                base.weight = torch.nn.Parameter(merged, requires_grad=False)
                layer.merged_adapters.extend(names)
                swapped.append((layer, base, weight, names))
        yield
    finally:
        for layer, base, weight, names in swapped:
            base.weight = weight
            for name in names:
                layer.merged_adapters.remove(name)

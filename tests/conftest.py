"""Shared fixtures: a tiny random-weight Qwen3 with a from-scratch byte-level BPE tokenizer.

Everything is built offline in a temporary folder in about a second; no hub access.
"""

from __future__ import annotations

import random

import pytest


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


def build_tiny_model(out_dir: str, *, vocab_size: int = 512, seed: int = 0, **shape) -> str:
    """Save a byte-level BPE tokenizer + random Qwen3ForCausalLM to ``out_dir``; return the path.
    ``shape``: fields of :class:`intrain.lab.tiny_model.Shape` (hidden_size, num_layers, ...)."""
    from intrain.lab.tiny_model import Shape, build_model, build_tokenizer

    return build_model(out_dir, build_tokenizer(synthetic_corpus(), vocab_size), Shape(**shape), seed=seed)


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

"""Generation engines behind one protocol (:class:`Generator`).

Stages import from here and never from a backend. Backends are imported lazily, so
``from intrain.engines import Request`` does not pull in torch, transformers or vLLM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intrain.engines.base import (
    Completion,
    EngineError,
    Generator,
    Request,
    SamplingParams,
    derive_seed,
    render_ids,
)

if TYPE_CHECKING:
    from intrain.engines.hf import HFGenerator
    from intrain.engines.openai import OpenAIGenerator
    from intrain.engines.vllm import VLLMGenerator

_LAZY = {
    "HFGenerator": "intrain.engines.hf",
    "VLLMGenerator": "intrain.engines.vllm",
    "OpenAIGenerator": "intrain.engines.openai",
}

__all__ = [
    "Completion",
    "EngineError",
    "Generator",
    "HFGenerator",
    "OpenAIGenerator",
    "Request",
    "SamplingParams",
    "VLLMGenerator",
    "derive_seed",
    "render_ids",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'intrain.engines' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

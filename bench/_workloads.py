"""The demo's eval workload, which several benchmarks time the engine on."""

from __future__ import annotations

from typing import Any


def demo_eval(batch_size: int = 48) -> tuple[Any, Any, list[Any]]:
    """(config, engine, requests): the demo config, the embedded SmolLM2 + warm-up adapter on CPU as the
    demo loads it, and the demo's eval requests (24 held-out problems x 4 samples)."""
    from intrain.config import load_config
    from intrain.data import load_problems
    from intrain.engines import HFGenerator, Request
    from intrain.stages.common import user_message

    cfg = load_config("demo")
    engine = HFGenerator.load(cfg.model.path, device="cpu", adapter=cfg.model.adapter, batch_size=batch_size)
    problems, _ = load_problems(cfg.data.eval)
    requests = [Request(messages=user_message(cfg.data.prompt_template, p.problem), n=4) for p in problems]
    return cfg, engine, requests

"""Generation with int8 dynamic-quantized linear layers vs float32, on the demo's model: speed and accuracy.

    python bench/bench_int8.py [--problems 64] [--seed 5]

Matrix products are about two thirds of a decode step of the embedded SmolLM2 on a CPU (torch profiler
over one demo eval), and fbgemm's int8 kernels run them several times faster than float32. This
measures whether that buys the demo anything: the HF engine generates the same requests (held-out
arithmetic problems x 4 samples at the demo's eval sampling, batch 48) with the model as the demo
loads it, then with torch's dynamic int8 quantization (int8 weights per output channel, activations
quantized per call) of (a) every linear layer, (b) all but the LM head, (c) all but the LM head and the
MLP down-projections. Accuracy is the share of samples the pipeline's grader (math-verify on the last
boxed answer) counts correct, as in eval's pass@1.
Writes bench/results/int8.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import warnings
from pathlib import Path

from _machine import machine

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "int8.json"
# variant -> which linear layers (by module name) are quantized
VARIANTS = {
    "int8, every linear layer": lambda name: True,
    "int8, all but the LM head": lambda name: name != "lm_head",
    "int8, all but the LM head and down-projections": lambda name: name != "lm_head" and "down_proj" not in name,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--seed", type=int, default=5, help="the arithmetic family's seed (not the demo's 1 or 2)")
    args = ap.parse_args()

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from intrain.config import load_config
    from intrain.data import load_problems
    from intrain.engines import HFGenerator, Request, SamplingParams
    from intrain.grading import Grader
    from intrain.stages.common import generate_graded, user_message

    cfg = load_config("demo")
    engine = HFGenerator.load(cfg.model.path, device="cpu", adapter=cfg.model.adapter, batch_size=48)
    problems, _ = load_problems(cfg.data.eval.model_copy(update={"size": args.problems, "seed": args.seed}))
    requests = [Request(messages=user_message(cfg.data.prompt_template, p.problem), n=4) for p in problems]
    e = cfg.eval
    sampling = SamplingParams(temperature=e.temperature, top_p=e.top_p, top_k=e.top_k, max_tokens=128, seed=0)

    fp32 = engine.model
    models = {"float32 (the demo)": fp32}
    with warnings.catch_warnings():  # torch points eager quantization users at torchao
        warnings.simplefilter("ignore")
        for variant, chosen in VARIANTS.items():
            linears = [n for n, m in fp32.named_modules() if isinstance(m, torch.nn.Linear) and chosen(n)]
            spec = dict.fromkeys(linears, per_channel_dynamic_qconfig)
            models[variant] = quantize_dynamic(copy.deepcopy(fp32), spec, dtype=torch.qint8)

    golds = [p.answer for p in problems]
    rows: dict[str, dict[str, float]] = {}
    with Grader(workers=cfg.grading.workers, timeout_s=cfg.grading.timeout_s) as grader:
        for variant, model in models.items():
            engine.model = model
            engine.generate(requests[:2], sampling)  # warm-up
            timings: dict[str, float] = {}
            per_request = generate_graded(engine, grader, requests, golds, sampling, timings=timings)
            graded = [g for gs in per_request for g in gs]
            tokens = sum(len(g.completion.token_ids) for g in graded)
            rows[variant] = {
                "wall_s": round(timings["generate_s"], 1),
                "tokens": tokens,
                "tok_s": round(tokens / timings["generate_s"], 1),
                "accuracy": round(sum(g.verdict.correct for g in graded) / len(graded), 3),
            }
            print(f"{variant}: {rows[variant]}", flush=True)

    base, best = rows["float32 (the demo)"], rows["int8, every linear layer"]
    result = {
        "name": "int8_generation",
        "baseline": f"float32: {base['tok_s']} tok/s, accuracy {base['accuracy']}",
        "ours": f"int8 dynamic, every linear layer: {best['tok_s']} tok/s, accuracy {best['accuracy']}",
        "ratio": round(best["tok_s"] / base["tok_s"], 2),
        "unit": "generated tokens/s (int8 / float32); accuracy alongside: not adopted if it falls",
        "variants": rows,
        "machine": machine(),
        "config": {
            "model": "embedded:smollm2 + warm-up adapter",
            "requests": f"{args.problems} arithmetic problems (seed {args.seed}) x 4 samples",
            "batch": 48,
            "max_tokens": 128,
            "sampling": f"temperature {e.temperature}, top-p {e.top_p}, top-k {e.top_k}",
            "quantization": "torch.ao.quantization.quantize_dynamic, qint8, per-channel weights",
        },
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

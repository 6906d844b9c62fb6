"""Generation throughput of the HF engine on the embedded SmolLM2-135M-Instruct.

Measures new tokens per second for batch sizes 1, 8 and 32 with a fixed 64 new tokens per
sequence (EOS is suppressed so every sequence really decodes 64 tokens) on a short arithmetic chat
prompt. Prints a JSON table and writes ``bench/results/generation.json``.

    python bench/bench_generation.py [--batch-sizes 1 8 32] [--new-tokens 64] [--device auto] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "generation.json"
PROMPT = "What is 27 + 58? Think step by step and put the final answer in \\boxed{}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:smollm2")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice). On a busy 2-core machine 1 is often faster.",
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)

    from intrain.engines import HFGenerator, Request, SamplingParams
    from intrain.models import resolve_model_path

    load_start = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    path = resolve_model_path(args.model)
    resolve_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = HFGenerator.load(path, device=args.device, dtype=args.dtype, batch_size=max(args.batch_sizes))
    load_s = time.perf_counter() - t0

    # Every sequence decodes exactly --new-tokens tokens: ban EOS for the benchmark.
    eos = gen.eos_token_ids

    def ban_eos(module, inputs, output):
        output.logits[..., eos] = -math.inf
        return output

    handle = gen.model.register_forward_hook(ban_eos)
    request = Request(messages=[{"role": "user", "content": PROMPT}])
    sampling = SamplingParams(temperature=args.temperature, top_p=0.95, max_tokens=args.new_tokens, seed=0)
    gen.batch_size = 1
    gen.generate([request], SamplingParams(max_tokens=4))  # warm-up

    rows = []
    for bs in args.batch_sizes:
        gen.batch_size = bs
        t0 = time.perf_counter()
        out = gen.generate([Request(messages=request.messages, n=bs)], sampling)
        dt = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for c in out[0])
        rows.append(
            {
                "batch_size": bs,
                "new_tokens_per_seq": args.new_tokens,
                "prompt_tokens": out[0][0].prompt_tokens,
                "tokens": tokens,
                "seconds": round(dt, 3),
                "tokens_per_s": round(tokens / dt, 1),
                "ms_per_step": round(1000 * dt / args.new_tokens, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    handle.remove()

    result = {
        "benchmark": "hf_generation",
        "model": args.model,
        "device": str(gen.device),
        "dtype": str(gen.model.dtype),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        # Other processes on the machine distort CPU numbers: record how busy it was.
        "load_avg_1m_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "gpu": torch.cuda.get_device_name(0) if gen.device.type == "cuda" else None,
        "resolve_model_s": round(resolve_s, 2),
        "load_s": round(load_s, 2),
        "temperature": args.temperature,
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    atomic_write_text(Path(args.out), text + "\n")


if __name__ == "__main__":
    main()

"""The HF engine's own sampler vs transformers' sampling, on the demo's eval requests.

    python bench/bench_sampler.py [--max-tokens 32] [--reps 2]

transformers samples with `torch.multinomial` over the whole vocabulary after sorting all of it for
top-p; the engine's `_Sampler` takes the top-k candidates first and draws by inverse CDF (see
engines/hf.py). Both run on the embedded SmolLM2 + warm-up adapter (the demo's model), on the demo's
24 held-out problems x 4 samples at the demo's sampling (temperature 0.7, top-p 0.8, top-k 20), in
batches of 48, alternating in one process. Every row decodes `--max-tokens` tokens unless it ends
first; tokens/s counts the tokens each path returned. Writes bench/results/sampler.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _machine import machine
from _workloads import demo_eval

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "sampler.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    import torch

    from intrain.engines import SamplingParams, render_ids

    _, engine, requests = demo_eval()
    engine.share_prefix = False  # both paths prefill every row: only the sampling differs
    sampling = SamplingParams(temperature=0.7, top_p=0.8, top_k=20, max_tokens=args.max_tokens, seed=0)
    tok, model = engine.tokenizer, engine.model

    def ours() -> int:
        return sum(len(c.token_ids) for cs in engine.generate(requests, sampling) for c in cs)

    def transformers_sampling() -> int:
        """The same batches through `generate(do_sample=True)` with transformers' warpers."""
        rows = [render_ids(tok, r) for r in requests for _ in range(r.n)]
        rows.sort(key=len)
        torch.manual_seed(0)
        total = 0
        for start in range(0, len(rows), 48):
            batch = rows[start : start + 48]
            width = max(map(len, batch))
            ids = torch.tensor([[engine.pad_token_id] * (width - len(r)) + r for r in batch])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in batch])
            with engine._clean_generation_config():  # no checkpoint sampling defaults, as in the engine
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=True,
                    temperature=0.7,
                    top_p=0.8,
                    top_k=20,
                    max_new_tokens=args.max_tokens,
                    eos_token_id=engine.eos_token_ids,
                    pad_token_id=engine.pad_token_id,
                )
            new = out[:, width:]
            ended = torch.isin(new, torch.tensor(engine.eos_token_ids))
            # Tokens up to and including the first end of sequence, as the engine counts them.
            lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, torch.tensor(new.shape[1]))
            total += int(lengths.sum())
        return total

    runs: dict[str, list[float]] = {"transformers": [], "ours": []}
    for _ in range(args.reps):
        for name, fn in (("transformers", transformers_sampling), ("ours", ours)):
            t0 = time.perf_counter()
            tokens = fn()
            runs[name].append(tokens / (time.perf_counter() - t0))
            print(f"{name}: {runs[name][-1]:.1f} tok/s ({tokens} tokens)", flush=True)
    baseline, best = sum(runs["transformers"]) / args.reps, sum(runs["ours"]) / args.reps
    result = {
        "name": "hf_sampler",
        "baseline": f"transformers' sampling (multinomial, full sort for top-p): {baseline:.1f} tok/s",
        "ours": f"engine's sampler (top-k first, inverse CDF): {best:.1f} tok/s",
        "ratio": round(best / baseline, 2),
        "unit": "generated tokens/s, mean over reps (ours / baseline)",
        "machine": machine(),
        "config": {
            "model": "embedded:smollm2 + warm-up adapter",
            "requests": "demo eval: 24 problems x 4 samples",
            "batch": 48,
            "max_tokens": args.max_tokens,
            "sampling": "temperature 0.7, top-p 0.8, top-k 20",
            "reps": args.reps,
        },
        "tok_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The HF engine's decode stream vs fixed batches, on the demo's eval requests.

    python bench/bench_decode.py [--max-tokens 128] [--reps 2]

`generate` decodes a fixed batch until its longest row ends, growing the KV cache by concatenation
(a copy of the whole cache per step). The engine's stream (engines/hf_decode.py) grows the cache in
place, drops finished rows once they are a quarter of the batch and lets waiting rows take their
places. Three arms in one process, alternating, on the embedded SmolLM2 + warm-up adapter (the demo's
model), the demo's 24 held-out problems x 4 samples at the demo's eval sampling, batches of 48:

- fixed batches, concatenating cache (what `generate` does): the drop/admit threshold out of reach and
  transformers' DynamicCache (with which the engine also prefills every row on its own);
- fixed batches, growing cache (the n rows of a prompt prefilled once);
- the stream (ours).

Each sampled row draws from its own random stream, so the three return the same token ids, asserted.
Also counts the row-steps each arm decoded. Writes bench/results/decode.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _machine import machine
from _workloads import demo_eval

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"
ARMS = ("fixed batches, concatenating cache", "fixed batches, growing cache", "stream")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    from transformers import DynamicCache

    from intrain.engines import SamplingParams, hf_decode

    cfg, engine, requests = demo_eval()
    e = cfg.eval
    sampling = SamplingParams(
        temperature=e.temperature, top_p=e.top_p, top_k=e.top_k, max_tokens=args.max_tokens, seed=0
    )
    row_steps = [0]
    handle = engine.model.get_input_embeddings().register_forward_hook(
        lambda m, a, o: row_steps.__setitem__(0, row_steps[0] + (a[0].shape[0] if a[0].shape[1] == 1 else 0))
    )
    default_share, growing_cache = hf_decode.DROP_SHARE, hf_decode.new_cache

    def concatenating_cache(model, room):
        return DynamicCache(config=model.config)

    def run(arm: str) -> tuple[list[list[int]], int]:
        hf_decode.DROP_SHARE = default_share if arm == "stream" else 2.0  # 2.0: never drop, never admit
        hf_decode.new_cache = concatenating_cache if "concatenating" in arm else growing_cache
        row_steps[0] = 0
        try:
            out = engine.generate(requests, sampling)
        finally:
            hf_decode.DROP_SHARE, hf_decode.new_cache = default_share, growing_cache
        return [c.token_ids for cs in out for c in cs], row_steps[0]

    runs: dict[str, list[float]] = {arm: [] for arm in ARMS}
    steps: dict[str, int] = {}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(args.reps):
        for arm in ARMS:
            t0 = time.perf_counter()
            ids, steps[arm] = run(arm)
            runs[arm].append(sum(map(len, ids)) / (time.perf_counter() - t0))
            outputs[arm] = ids
            print(f"{arm}: {runs[arm][-1]:.1f} tok/s, {steps[arm]} row-steps", flush=True)
    handle.remove()
    for arm in ARMS[1:]:
        assert outputs[arm] == outputs[ARMS[0]], f"{arm}: the samples changed"
    mean = {arm: sum(v) / len(v) for arm, v in runs.items()}
    baseline, ours = mean[ARMS[0]], mean["stream"]
    result = {
        "name": "hf_decode_stream",
        "baseline": f"{ARMS[0]} (as in generate): {baseline:.1f} tok/s, {steps[ARMS[0]]} decoded row-steps",
        "ours": f"stream (rows leave, waiting rows join, cache grows in place): {ours:.1f} tok/s, "
        f"{steps['stream']} decoded row-steps",
        "ratio": round(ours / baseline, 2),
        "unit": "generated tokens/s, mean over reps (ours / baseline); same token ids asserted",
        "fixed_batches_growing_cache": f"{mean[ARMS[1]]:.1f} tok/s ({mean[ARMS[1]] / baseline:.2f}x baseline; "
        "with the shared prefill the growing cache allows)",
        "machine": machine(),
        "config": {
            "model": "embedded:smollm2 + warm-up adapter",
            "requests": "demo eval: 24 problems x 4 samples",
            "batch": 48,
            "max_tokens": args.max_tokens,
            "sampling": f"temperature {e.temperature}, top-p {e.top_p}, top-k {e.top_k}",
            "reps": args.reps,
        },
        "tok_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
        "row_steps": steps,
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Shared-prefix prefill in the HF engine: one long prompt, n samples, with and without sharing.

Builds a small random Qwen3 (hidden 256, 4 layers, 4 heads / 2 kv heads, head_dim 64) and a
tokenizer offline, then generates ``--n`` samples of ``--new-tokens`` tokens (EOS banned, so every
sample decodes them all) for one chat prompt of about ``--prompt-tokens`` tokens. The old path
(``HFGenerator(share_prefix=False)``: every sample prefills the prompt) and the new one (the prompt
is prefilled once and its KV cache copied) run side by side in one process, alternating, on the
same weights. For each: wall time (median of ``--reps``), the tokens that went through the model
(counted at the embedding layer) and how many of them were prompt tokens. Prints JSON and writes
``bench/results/prefix.json``.

    python bench/bench_prefix.py [--prompt-tokens 700] [--n 8] [--new-tokens 64] [--reps 3] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "prefix.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-tokens", type=int, default=700)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 1 keeps numbers steadier on a shared machine"
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)

    from intrain.data.arithmetic import generate_arithmetic
    from intrain.engines import HFGenerator, Request, SamplingParams
    from intrain.lab.tiny_model import Shape, build_model, build_tokenizer

    texts = [p.problem + "\n\n" + (p.reference_solution or "") for p in generate_arithmetic(400, seed=5)]
    shape = Shape(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=64)
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as folder:
        build_model(folder, build_tokenizer(texts, 1024), shape)
        new = HFGenerator.load(folder, device=args.device, dtype=args.dtype, batch_size=args.n)
    old = HFGenerator(new.model, new.tokenizer, batch_size=args.n, share_prefix=False)

    # A chat prompt of about --prompt-tokens tokens: arithmetic problems with their solutions.
    tok = new.tokenizer
    body = tok.decode(tok("\n\n".join(texts), add_special_tokens=False)["input_ids"][: args.prompt_tokens - 20])
    request = Request(messages=[{"role": "user", "content": body + "\n\nSolve the last problem again."}], n=args.n)
    sampling = SamplingParams(temperature=1.0, max_tokens=args.new_tokens, seed=0)

    eos = new.eos_token_ids
    fed: list[int] = []  # tokens per model input, recorded at the embedding layer

    def ban_eos(module, inputs, output):
        output.logits[..., eos] = -math.inf
        return output

    def count(module, inputs, output):
        fed.append(inputs[0].numel())

    handles = [
        new.model.register_forward_hook(ban_eos),
        new.model.get_input_embeddings().register_forward_hook(count),
    ]
    for engine in (old, new):  # warm-up, same shapes as the timed calls
        engine.generate([request], SamplingParams(temperature=1.0, max_tokens=4, seed=1))

    runs: dict[str, list[dict]] = {"old": [], "new": []}
    outputs: dict[str, list] = {}
    for rep in range(args.reps):
        # Alternate which path goes first, so drift on a shared machine hits both alike.
        for name in ("old", "new") if rep % 2 == 0 else ("new", "old"):
            engine = old if name == "old" else new
            fed.clear()
            if args.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = engine.generate([request], sampling)
            wall = time.perf_counter() - t0
            outputs[name] = out
            new_tokens = sum(len(c.token_ids) for c in out[0])
            # Every token fed is a prompt token except the one fed per row for each decode step
            # after the first (the last sampled token is never fed).
            decode_fed = args.n * (args.new_tokens - 1)
            runs[name].append(
                {
                    "wall_s": round(wall, 4),
                    "tokens_through_model": sum(fed),
                    "prompt_tokens_fed": sum(fed) - decode_fed,
                    "model_calls": len(fed),
                    "new_tokens": new_tokens,
                }
            )
            print(json.dumps({"path": name, "rep": rep, **runs[name][-1]}), flush=True)
    for h in handles:
        h.remove()

    prompt_tokens = outputs["new"][0][0].prompt_tokens

    def summary(name: str) -> dict:
        walls = [r["wall_s"] for r in runs[name]]
        return {
            "median_wall_s": round(statistics.median(walls), 4),
            "wall_s": walls,
            "prompt_tokens_fed": runs[name][0]["prompt_tokens_fed"],
            "tokens_through_model": runs[name][0]["tokens_through_model"],
            "model_calls": runs[name][0]["model_calls"],
        }

    old_s, new_s = summary("old"), summary("new")
    same = [a.token_ids for a in outputs["old"][0]] == [b.token_ids for b in outputs["new"][0]]
    result = {
        "name": "hf_shared_prefix",
        "baseline": f"every sample prefills the prompt: median {old_s['median_wall_s']} s, "
        f"{old_s['prompt_tokens_fed']} prompt tokens through the model",
        "ours": f"the prompt prefilled once: median {new_s['median_wall_s']} s, "
        f"{new_s['prompt_tokens_fed']} prompt tokens",
        "ratio": round(old_s["median_wall_s"] / new_s["median_wall_s"], 2),
        "unit": "wall time (baseline / ours); prompt tokens fed in prompt_tokens_fed_ratio_old_over_new",
        "config": {"prompt_tokens": prompt_tokens, "n": args.n, "new_tokens": args.new_tokens, "reps": args.reps},
        "model": "random Qwen3, hidden 256, 4 layers, 4 heads / 2 kv heads, head_dim 64, vocab 1024",
        "device": str(new.device),
        "dtype": str(new.model.dtype),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        # Other processes on the machine distort CPU numbers: record how busy it was.
        "load_avg_1m_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "note": "timings on a shared machine; old and new alternate in one process on the same weights",
        "prompt_tokens": prompt_tokens,
        "n": args.n,
        "new_tokens_per_sample": args.new_tokens,
        "reps": args.reps,
        "old_share_prefix_false": old_s,
        "new_share_prefix_true": new_s,
        "wall_ratio_old_over_new": round(old_s["median_wall_s"] / new_s["median_wall_s"], 2),
        "prompt_tokens_fed_ratio_old_over_new": round(old_s["prompt_tokens_fed"] / new_s["prompt_tokens_fed"], 2),
        "same_sampled_tokens": same,
    }
    text = json.dumps(result, indent=2)
    print(text)
    atomic_write_text(Path(args.out), text + "\n")


if __name__ == "__main__":
    main()

"""HF engine vs the obvious alternatives, side by side in one process on the same random weights.

    python bench/bench_engine.py [--shape tiny|smollm2] [--batches 1 8 32] [--new-tokens 64] [--device cpu]
    python bench/bench_engine.py --shape smollm2 --batches 32 128 --new-tokens 256 --device cuda   # a GPU

Paths, each on ``batch`` distinct prompts of ``--prompt-tokens`` tokens, sampled at temperature 1 with
no end of sequence (every row decodes ``--new-tokens`` tokens):
- ``loop``: ``model.generate`` once per prompt (what a per-request script does). Its tok/s does not
  depend on the batch, so it is measured once, on ``--loop-prompts`` prompts;
- ``engine``: ``HFGenerator.generate`` with the dynamic cache (the CPU default);
- ``engine_static`` (CUDA only): the same with the static cache, which transformers compiles there
  (the default on CUDA; on a CPU it would run uncompiled and tell nothing);
- ``generate``: one batched ``model.generate`` call (the engine minus its bookkeeping).
Every path is warmed up first with the same batch and prompts: on CUDA with the same number of new
tokens (the static cache compiles for its length), on a CPU with 4 (nothing compiles; the warm-up only
pays first-call costs, and a full-length one would double the benchmark's time).

On CUDA each row also reports the fraction of the decode's memory-bandwidth bound reached: each step
reads the weights once and the KV cache of every row (``--bandwidth-gbs``, default the H200's 4,800).
Writes ``bench/results/engine_<device>.json`` with name, baseline, ours, ratio, unit, machine, config.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--loop-prompts", type=int, default=4)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--bandwidth-gbs", type=float, default=4800.0, help="GPU memory bandwidth for the bound")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from intrain.data.arithmetic import generate_arithmetic
    from intrain.engines import HFGenerator, Request, SamplingParams
    from intrain.lab.tiny_model import SMOLLM2_135M_SHAPE, Shape, build_model, build_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    texts = [p.problem + "\n\n" + (p.reference_solution or "") for p in generate_arithmetic(400, seed=5)]
    shape = SMOLLM2_135M_SHAPE if args.shape == "smollm2" else Shape(hidden_size=256, num_layers=4, head_dim=64)
    folder = tempfile.mkdtemp()
    build_model(folder, build_tokenizer(texts, 1024), shape)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(args.device).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    engine = HFGenerator(model, tok, batch_size=1)  # one copy of the weights behind every path
    # The end-of-sequence id is one past the vocabulary, so it is never sampled: every row on every
    # path decodes exactly --new-tokens tokens (a hook banning it would not survive compilation).
    never = model.config.vocab_size
    engine.eos_token_ids = [never]
    corpus = tok(" ".join(texts * 4))["input_ids"]
    width = args.prompt_tokens
    prompts = [corpus[i * 13 : i * 13 + width] for i in range(max(args.batches + [args.loop_prompts]))]
    params = SamplingParams(temperature=1.0, max_tokens=args.new_tokens, seed=0)
    warm_tokens = args.new_tokens if args.device == "cuda" else 4
    params_warm = SamplingParams(temperature=1.0, max_tokens=warm_tokens, seed=1)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> tuple[float, int]:
        sync()
        t0 = time.perf_counter()
        tokens = fn()
        sync()
        return time.perf_counter() - t0, tokens

    def plain(batch_prompts: list[list[int]], new_tokens: int = args.new_tokens) -> int:
        ids = torch.tensor(batch_prompts, device=args.device)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=new_tokens,
            eos_token_id=never,
            pad_token_id=engine.pad_token_id,
        )
        return (out.shape[1] - ids.shape[1]) * out.shape[0]

    def run_engine(static: bool, batch_prompts: list[list[int]], sampling: SamplingParams) -> int:
        engine.static_cache = static
        engine.batch_size = len(batch_prompts)
        outs = engine.generate([Request(prompt=tok.decode(p)) for p in batch_prompts], sampling)
        return sum(len(c.token_ids) for cs in outs for c in cs)

    loop_prompts = prompts[: args.loop_prompts]
    plain(loop_prompts[:1], warm_tokens)  # warm-up
    loop_s, loop_tokens = timed(lambda: sum(plain([p]) for p in loop_prompts))
    loop_tok_s = loop_tokens / loop_s
    print(f"loop (generate per prompt): {loop_tok_s:.1f} tok/s", flush=True)

    params_count = sum(p.numel() for p in model.parameters())
    weight_bytes = params_count * (2 if dtype == torch.bfloat16 else 4)
    cfg = model.config
    kv_bytes_per_token = (
        2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * (weight_bytes // params_count)
    )
    rows: list[dict[str, Any]] = []
    paths = ["engine", "engine_static", "generate"] if args.device == "cuda" else ["engine", "generate"]
    for batch in args.batches:
        batch_prompts = prompts[:batch]
        row: dict[str, Any] = {"batch": batch, "loop_tok_s": round(loop_tok_s, 1)}
        for path in paths:
            if path == "generate":
                plain(batch_prompts, warm_tokens)
                wall, tokens = timed(lambda bp=batch_prompts: plain(bp))
            else:
                static = path == "engine_static"
                t0 = time.perf_counter()
                run_engine(static, batch_prompts, params_warm)  # warm-up, same shapes (compiles on CUDA)
                row[f"{path}_warmup_s"] = round(time.perf_counter() - t0, 1)
                wall, tokens = timed(lambda bp=batch_prompts, s=static: run_engine(s, bp, params))
            row[f"{path}_tok_s"] = round(tokens / wall, 1)
            row[f"{path}_vs_loop"] = round(tokens / wall / loop_tok_s, 2)
            print(f"batch {batch} {path}: {row[f'{path}_tok_s']} tok/s", flush=True)
        if args.device == "cuda":
            # Each decode step reads the weights once and, per row, the KV cache of its context so far.
            mean_context = width + args.new_tokens / 2
            step_bytes = weight_bytes + batch * mean_context * kv_bytes_per_token
            bound = batch * args.bandwidth_gbs * 1e9 / step_bytes
            row["bandwidth_bound_tok_s"] = round(bound)
            for path in paths:
                row[f"{path}_of_bound"] = round(row[f"{path}_tok_s"] / bound, 4)
        rows.append(row)

    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    best = "engine_static" if args.device == "cuda" else "engine"
    top = rows[-1]
    result = {
        "name": f"hf_engine_{args.device}",
        "baseline": f"loop: model.generate per prompt, {top['loop_tok_s']} tok/s",
        "ours": f"{best} at batch {top['batch']}, {top[f'{best}_tok_s']} tok/s",
        "ratio": top[f"{best}_vs_loop"],
        "unit": "generated tokens/s (ours / baseline)",
        "machine": machine(device=device_name),
        "config": {
            "shape": args.shape,
            "parameters": params_count,
            "dtype": str(dtype),
            "prompt_tokens": width,
            "new_tokens": args.new_tokens,
            "loop_prompts": args.loop_prompts,
            "threads": torch.get_num_threads(),
            "bandwidth_gbs": args.bandwidth_gbs if args.device == "cuda" else None,
        },
        "rows": rows,
    }
    out = Path(args.out) if args.out else RESULTS / f"engine_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

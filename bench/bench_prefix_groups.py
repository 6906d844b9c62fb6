"""Prompts that start alike prefilled as groups vs each distinct prompt prefilled whole, on the demo's propose.

    python bench/bench_prefix_groups.py RUN_DIR [--reps 2] [--limit N]   # RUN_DIR: a demo run with a propose stage

The proposer prompt of one problem's attempts repeats the chat template, the instructions, the problem
and its reference solution, and the attempts often agree on their first steps. The HF engine groups
prompts entering its decode stream together by their common start and prefills it once
(`hf_decode._prefix_groups`); the baseline is the same engine with grouping off (every distinct prompt
prefilled whole, the n samples of a prompt still sharing its prefill). Both generate the propose
stage's requests (its attempts, template, n and sampling) on the demo's model, alternating, in one
process. Reports wall time, tokens through the model in prefill calls, and whether every completion
is the same token for token. Writes bench/results/prefix_groups.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _machine import machine

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "prefix_groups.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N attempts (a quick check)")
    args = ap.parse_args()

    from intrain.config import load_config
    from intrain.engines import Request, hf_decode
    from intrain.interventions.prefix import split_substeps
    from intrain.prompts import load_template
    from intrain.records import Proposal
    from intrain.stages.common import build_generator, sampling_params
    from intrain.stages.propose import verify_prompt
    from intrain.store import read_stage_records

    cfg = load_config("demo")
    pcfg = cfg.propose
    attempts = {p.attempt_id: p for p in read_stage_records(args.run_dir, "propose", Proposal)}
    if not attempts:
        raise SystemExit(f"{args.run_dir}: no propose records")
    rows = list(attempts.values())[: args.limit]
    engine = build_generator(cfg.model, cfg.model.path, cfg.model.adapter)
    template = load_template(pcfg.template)
    requests = []
    for a in rows:
        prompt = verify_prompt(
            template,
            engine.tokenizer,
            problem=a.problem,
            reference_solution=a.reference_solution,
            answer=a.answer,
            substeps=split_substeps(a.attempt, pcfg.separator),
            max_tokens=pcfg.max_prompt_tokens,
            history=[],
        )
        requests.append(Request(messages=prompt.messages, n=pcfg.n))
    sampling = sampling_params(pcfg, 0)

    prefill: list[int] = []  # tokens of every model input wider than one column (prefills)
    engine.model.get_input_embeddings().register_forward_hook(
        lambda m, a, o: prefill.append(a[0].numel()) if a[0].shape[1] > 1 else None
    )
    grouping_on = hf_decode.MIN_SHARED_TOKENS
    runs: dict[str, list[dict]] = {"baseline": [], "ours": []}
    outputs: dict[str, list] = {}
    for rep in range(args.reps):
        for name in ("baseline", "ours") if rep % 2 == 0 else ("ours", "baseline"):
            # A common start never reaches this length: grouping off, everything else as it is.
            hf_decode.MIN_SHARED_TOKENS = 10**9 if name == "baseline" else grouping_on
            prefill.clear()
            t0 = time.perf_counter()
            out = engine.generate(requests, sampling)
            wall = time.perf_counter() - t0
            outputs[name] = [[c.token_ids for c in cs] for cs in out]
            tokens = sum(len(c.token_ids) for cs in out for c in cs)
            runs[name].append({"wall_s": round(wall, 2), "prefill_tokens": sum(prefill), "new_tokens": tokens})
            print(json.dumps({"path": name, "rep": rep, **runs[name][-1]}), flush=True)
    hf_decode.MIN_SHARED_TOKENS = grouping_on

    pairs = [(a, b) for ra, rb in zip(outputs["baseline"], outputs["ours"]) for a, b in zip(ra, rb)]
    same = sum(a == b for a, b in pairs)
    median = {name: statistics.median(r["wall_s"] for r in runs[name]) for name in runs}
    result = {
        "name": "prefix_groups",
        "baseline": f"each distinct prompt prefilled whole: {median['baseline']:.1f} s, "
        f"{runs['baseline'][0]['prefill_tokens']} prefill tokens",
        "ours": f"prompts that start alike prefill their common start once: {median['ours']:.1f} s, "
        f"{runs['ours'][0]['prefill_tokens']} prefill tokens",
        "ratio": round(median["baseline"] / median["ours"], 2),
        "unit": "wall time of the propose requests (baseline / ours), median over reps",
        "prefill_token_ratio": round(runs["baseline"][0]["prefill_tokens"] / runs["ours"][0]["prefill_tokens"], 2),
        "identical_completions": f"{same} of {len(pairs)}",
        "machine": machine(device="cpu"),
        "config": {
            "run_dir": str(args.run_dir),
            "attempts": len(requests),
            "n": pcfg.n,
            "max_tokens": pcfg.max_tokens,
            "template": pcfg.template,
            "batch_size": cfg.model.batch_size,
            "min_shared_tokens": grouping_on,
            "reps": args.reps,
        },
        "runs": runs,
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

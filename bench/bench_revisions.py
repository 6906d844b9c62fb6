"""The HF engine at another git revision vs this checkout, on the demo's eval requests.

    python bench/bench_revisions.py REV [--reps 2]

Checks REV out into a temporary git worktree, then times one `generate` call with each revision's
engine over the demo's 96 eval sequences (24 held-out problems x 4, batch 48, the demo's eval
sampling, 128 tokens) and over 8 of them (2 problems x 4: a GRPO step's rollouts in the demo). Each
timing runs in a fresh process with that revision's `src` first on the path (same venv, same
converted model, same adapter file), the two revisions alternating, `--reps` seeds. Revisions may
draw different samples from a seed, so generated tokens per second are compared, not wall time.
Writes bench/results/revisions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine
from _workloads import demo_eval

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "revisions.json"
MODES = {"eval": "96 sequences (24 problems x 4)", "group": "8 sequences (2 problems x 4)"}


def child(mode: str, seed: int) -> None:
    """One timed `generate` call with whichever intrain is first on the path; prints a JSON line."""
    from intrain.engines import SamplingParams

    cfg, engine, requests = demo_eval()
    requests = requests if mode == "eval" else requests[:2]
    e = cfg.eval
    sampling = SamplingParams(temperature=e.temperature, top_p=e.top_p, top_k=e.top_k, max_tokens=128, seed=seed)
    t0 = time.perf_counter()
    out = engine.generate(requests, sampling)
    seconds = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for cs in out for c in cs)
    print(json.dumps({"seconds": round(seconds, 2), "tokens": tokens}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="the git revision to compare with (e.g. a commit before an engine change)")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    base = subprocess.run(["git", "rev-parse", args.rev], cwd=ROOT, capture_output=True, text=True, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory(prefix="intrain-rev-") as tmp:
        tree = Path(tmp) / "tree"
        add = ["git", "worktree", "add", "--detach", "-q", str(tree), base.stdout.strip()]
        subprocess.run(add, cwd=ROOT, check=True)
        try:
            sources = {"baseline": tree / "src", "ours": ROOT / "src"}
            tok_s: dict[str, dict[str, list[float]]] = {m: {k: [] for k in sources} for m in MODES}
            for rep in range(args.reps):
                for mode in MODES:
                    for name, src in sources.items():
                        env = {**os.environ, "PYTHONPATH": str(src)}
                        cmd = [sys.executable, __file__, "--child", mode, str(rep)]
                        line = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                        run = json.loads(line.strip().splitlines()[-1])
                        tok_s[mode][name].append(round(run["tokens"] / run["seconds"], 1))
                        print(f"{mode} {name} seed {rep}: {tok_s[mode][name][-1]} tok/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    mean = {m: {k: sum(v) / len(v) for k, v in runs.items()} for m, runs in tok_s.items()}
    result = {
        "name": "hf_engine_revisions",
        "baseline": f"the engine at {base.stdout.strip()[:12]}: "
        + ", ".join(f"{MODES[m]} {mean[m]['baseline']:.1f} tok/s" for m in MODES),
        "ours": f"the engine at {head.stdout.strip()[:12]}: "
        + ", ".join(f"{MODES[m]} {mean[m]['ours']:.1f} tok/s" for m in MODES),
        "ratio": round(mean["eval"]["ours"] / mean["eval"]["baseline"], 2),
        "ratio_group": round(mean["group"]["ours"] / mean["group"]["baseline"], 2),
        "unit": "generated tokens/s, mean over seeds (ours / baseline); `ratio`: the 96 sequences",
        "machine": machine(),
        "config": {
            "model": "embedded:smollm2 + warm-up adapter",
            "batch": 48,
            "max_tokens": 128,
            "reps": args.reps,
            "modes": MODES,
        },
        "tok_s": tok_s,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()

"""Early-stopped continuation waves vs fixed n, on the demo's filter.

    python bench/bench_waves.py RUN_DIR [--candidates K] [--reps 1]   # a demo run dir with a complete propose stage

The filter continues each candidate's guided prefix up to n = 8 times, in waves of 4, and stops a
candidate once its verdict is fixed (min_correct reached, or out of reach). The baseline draws all n
continuations of every candidate in one go. Each candidate's k-th continuation has its own seed
(`Request.seed`), so the waves draw a prefix of what fixed n draws: the verdicts are asserted to be a
prefix and the kept sets equal. Same engine (the demo's model, resident), the demo's filter settings
and shards, the same grading pool; fixed n first, then the waves (with `--reps 2`, then the waves again
before fixed n; every repetition is asserted to draw the same continuations). `--candidates K` takes
the first K candidates in the propose stage's order (not chosen by outcome), for a shorter run
(`make bench`: 16).
Writes bench/results/waves.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _machine import machine

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "waves.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a demo run directory with a complete propose stage")
    ap.add_argument("--candidates", type=int, default=0, help="only the first K candidates (0: all)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions; the arms' order alternates between them")
    args = ap.parse_args()
    run_dir = args.run_dir

    from intrain.config import load_config
    from intrain.grading import Grader
    from intrain.records import Proposal
    from intrain.stages.common import build_generator, chunks
    from intrain.stages.filter import Continuation, continue_prefixes
    from intrain.store import read_stage_records

    cfg = load_config("demo")
    fcfg = cfg.filter
    candidates = [p for p in read_stage_records(run_dir, "propose", Proposal) if p.status == "ok"]
    if not candidates:
        raise SystemExit(f"{run_dir}: no `ok` proposals in its propose stage")
    if args.candidates:
        candidates = candidates[: args.candidates]
    shards = chunks(candidates, fcfg.shard_size)
    generator = build_generator(cfg.model, cfg.model.path, cfg.model.adapter)
    arms = {
        "fixed n": (fcfg.model_copy(update={"wave_size": fcfg.n}), False),
        "waves, early stop": (fcfg, True),
    }
    runs: dict[str, dict] = {}
    walls: dict[str, list[float]] = {name: [] for name in arms}
    with Grader(workers=cfg.grading.workers, timeout_s=cfg.grading.timeout_s) as grader:
        for rep in range(args.reps):
            for name in list(arms) if rep % 2 == 0 else list(arms)[::-1]:
                arm_cfg, early_stop = arms[name]
                tokens = [0]
                t0 = time.perf_counter()
                counts = []
                for index, shard in enumerate(shards):
                    items = [Continuation(p.problem, p.answer, p.guided_prefix or "") for p in shard]
                    counts += continue_prefixes(
                        generator,
                        grader,
                        items,
                        arm_cfg,
                        cfg.data.prompt_template,
                        index,
                        early_stop,
                        lambda _rows, new, t=tokens: t.__setitem__(0, t[0] + new),
                    )
                walls[name].append(round(time.perf_counter() - t0, 1))
                run = {
                    "continuations": sum(c.sampled for c in counts),
                    "tokens": tokens[0],
                    "kept": [i for i, c in enumerate(counts) if c.correct >= fcfg.min_correct],
                    "verdicts": [c.verdicts for c in counts],
                }
                assert runs.setdefault(name, run) == run, f"{name}: another repetition drew other continuations"
                print(f"{name}: {walls[name][-1]} s, {run['continuations']} continuations", flush=True)
    for name in arms:
        runs[name]["wall_s"] = round(sum(walls[name]) / len(walls[name]), 1)
    fixed, waves = runs["fixed n"], runs["waves, early stop"]
    for v_waves, v_fixed in zip(waves["verdicts"], fixed["verdicts"]):
        assert v_waves == v_fixed[: len(v_waves)], "a wave drew other continuations than fixed n"
    assert waves["kept"] == fixed["kept"], "early stopping changed the kept set"
    result = {
        "name": "filter_waves",
        "baseline": f"fixed n = {fcfg.n}: {fixed['continuations']} continuations, {fixed['tokens']} tokens, "
        f"{fixed['wall_s']} s",
        "ours": f"waves of {fcfg.wave_size} with early stop: {waves['continuations']} continuations, "
        f"{waves['tokens']} tokens, {waves['wall_s']} s",
        "ratio": round(fixed["wall_s"] / waves["wall_s"], 2),
        "unit": "wall time, mean over reps (baseline / ours); same kept set, verdicts a prefix of fixed n's (asserted)",
        "machine": machine(),
        "config": {
            "run_dir": str(run_dir),
            "candidates": len(candidates),
            "n": fcfg.n,
            "wave_size": fcfg.wave_size,
            "min_correct": fcfg.min_correct,
            "reps": args.reps,
            "max_tokens": fcfg.max_tokens,
            "model": "embedded:smollm2 + warm-up adapter",
        },
        "kept": len(waves["kept"]),
        "wall_s": walls,
        "continuations_ratio": round(fixed["continuations"] / waves["continuations"], 2),
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

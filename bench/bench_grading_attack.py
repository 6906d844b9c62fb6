"""Grader under attack: the whole hostile corpus (tests/fixtures/hostile_predictions.py) through Grader.

Three passes over the corpus, each on a fresh pool:
1. latency: every item in its own ``grade`` call on a 2-worker pool, timed (max, p99 per item);
2. throughput: the corpus as one batch on a 2-worker pool (items/s under attack), followed by a
   normal batch on the same, attacked pool, whose verdicts must be right;
3. one worker: the corpus as one batch on a 1-worker pool, whose verdicts must equal pass 2's
   except where one of the two is a timeout (an item whose cost is near the deadline can finish
   in one pass and not in the other; both lists are reported).
Every pass also checks the corpus promises (no false positive, pinned verdicts, hedges, no canary
file). Worker deaths and replacements come from ``Grader.stats``.

Usage: python bench/bench_grading_attack.py [--timeout 10] [--margin 3]
Prints a summary and writes bench/results/grading_attack.json (exit status 1 if a check failed).
With the default 10 s deadline (the config default) this takes about 25 minutes on a shared
2-core machine (--timeout 2: about 8): most of it is items that run into the deadline, one
deadline each per pass, the 1-worker pass paying for all of them in a row.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from intrain.grading import Grader, Verdict

ROOT = Path(__file__).resolve().parents[1]

# A normal batch graded after the attack on the attacked pool: (gold, completion, expected reason).
NORMAL_BATCH = [
    (r"\frac{1}{2}", r"so \boxed{0.5}", "correct"),
    ("(1,2]", r"so \boxed{(1,2]}", "correct"),
    ("(1,2]", r"so \boxed{(1,2)}", "wrong"),
    (r"2\sqrt{3}", r"so \boxed{\sqrt{12}}", "correct"),
    ("x^2+2x+1", r"so \boxed{(x+1)^2}", "correct"),
    ("Tuesday", r"so \boxed{\text{Monday}}", "wrong"),
    ("1000", r"so \boxed{1,000}", "correct"),
    ("-3", r"so \boxed{3}", "wrong"),
    (r"\{1,2,3\}", r"so \boxed{\{3,2,1\}}", "correct"),
    ("7", "no box here", "no_answer"),
]


def load_corpus_module() -> ModuleType:
    """The corpus lives with the tests; loaded by path so that no package layout is assumed."""
    path = ROOT / "tests" / "fixtures" / "hostile_predictions.py"
    spec = importlib.util.spec_from_file_location("hostile_predictions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def check(items: list[Any], verdicts: list[Verdict]) -> dict[str, list[str]]:
    """The corpus promises (see hostile_predictions.py), as lists of offending item names."""
    false_positives = [i.name for i, v in zip(items, verdicts) if v.correct and i.truth is False]
    pinned = [
        f"{i.name}: {v.reason} != {i.expect}" for i, v in zip(items, verdicts) if i.expect and v.reason != i.expect
    ]
    credited: Counter[str] = Counter(i.hedge for i, v in zip(items, verdicts) if i.hedge and v.correct)
    hedges = [group for group, n in credited.items() if n > 1]
    return {"false_positives": false_positives, "pinned_mismatches": pinned, "hedges_credited_twice": hedges}


def warm(grader: Grader) -> None:
    """Start every worker outside the clock (a spawn imports SymPy and ANTLR)."""
    grader.grade([r"\boxed{1.0}"] * grader.workers, ["1"] * grader.workers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=10.0, help="per-item deadline (config default 10 s)")
    parser.add_argument(
        "--margin", type=float, default=3.0, help="allowed latency over the deadline (reply, kill, parent work)"
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus generator seed")
    args = parser.parse_args()

    corpus_module = load_corpus_module()
    canary_dir = tempfile.mkdtemp(prefix="intrain-canary-")
    items = corpus_module.build_corpus(canary_dir, seed=args.seed)
    texts, golds = [i.text for i in items], [i.gold for i in items]
    failures: dict[str, Any] = {}

    # 1. latency: one item per call, so that each item's time is its own.
    with Grader(workers=2, timeout_s=args.timeout) as grader:
        warm(grader)
        latencies: list[float] = []
        single: list[Verdict] = []
        for item in items:
            start = time.perf_counter()
            single.extend(grader.grade([item.text], [item.gold]))
            latencies.append(time.perf_counter() - start)
            print(f"{latencies[-1]:7.2f}s {single[-1].reason:12s} {item.category}/{item.name}", flush=True)
        latency_stats = dataclasses.asdict(grader.stats)
    failures["latency_pass"] = check(items, single)
    over = [f"{i.name}: {t:.2f}s" for i, t in zip(items, latencies) if t > args.timeout + args.margin]

    # 2. throughput: the corpus as one batch, then a normal batch on the attacked pool.
    with Grader(workers=2, timeout_s=args.timeout) as grader:
        warm(grader)
        start = time.perf_counter()
        batch2 = grader.grade(texts, golds)
        batch_seconds = time.perf_counter() - start
        after = grader.grade([c for _, c, _ in NORMAL_BATCH], [g for g, _, _ in NORMAL_BATCH])
        batch2_stats = dataclasses.asdict(grader.stats)
    failures["batch_2_workers"] = check(items, batch2)
    after_attack_wrong = [
        f"{gold} | {text}: {v.reason}" for (gold, text, want), v in zip(NORMAL_BATCH, after) if v.reason != want
    ]

    # 3. one worker: verdicts must not depend on the pool size.
    with Grader(workers=1, timeout_s=args.timeout) as grader:
        warm(grader)
        start = time.perf_counter()
        batch1 = grader.grade(texts, golds)
        batch1_seconds = time.perf_counter() - start
        batch1_stats = dataclasses.asdict(grader.stats)
    failures["batch_1_worker"] = check(items, batch1)
    differ_1_vs_2 = [f"{i.name}: {a.reason} vs {b.reason}" for i, a, b in zip(items, batch1, batch2) if a != b]
    # A deadline is wall-clock time, so an item whose cost is near it can time out in one pass and
    # finish in another (2 workers on 2 busy cores run slower than 1). Any other difference is a bug.
    differ_beyond_deadline = [
        f"{i.name}: {a.reason} vs {b.reason}"
        for i, a, b in zip(items, batch1, batch2)
        if a != b and "timeout" not in (a.reason, b.reason)
    ]
    differ_single_vs_batch = [f"{i.name}: {a.reason} vs {b.reason}" for i, a, b in zip(items, single, batch2) if a != b]

    canaries = sorted(os.listdir(canary_dir))
    shutil.rmtree(canary_dir)
    ok = (
        not any(any(lists.values()) for lists in failures.values())
        and not over
        and not after_attack_wrong
        and not differ_beyond_deadline
        and not canaries
    )
    result = {
        "bench": "grading_attack",
        "ok": ok,
        "note": "timings from a shared machine (other jobs ran on the same cores); compare runs on one machine only",
        "n_items": len(items),
        "categories": dict(Counter(i.category for i in items)),
        "timeout_s": args.timeout,
        "latency_margin_s": args.margin,
        "latency_per_item_s": {
            "max": round(max(latencies), 3),
            "p99": round(percentile(latencies, 99), 3),
            "p50": round(percentile(latencies, 50), 3),
            "over_timeout_plus_margin": over,
        },
        "latency_max_by_category_s": {
            category: round(max(t for i, t in zip(items, latencies) if i.category == category), 3)
            for category in sorted({i.category for i in items})
        },
        "batch_2_workers": {
            "seconds": round(batch_seconds, 2),
            "items_per_s": round(len(items) / batch_seconds, 2),
            "pool": batch2_stats,
        },
        "batch_1_worker": {
            "seconds": round(batch1_seconds, 2),
            "items_per_s": round(len(items) / batch1_seconds, 2),
            "pool": batch1_stats,
        },
        "latency_pass_pool": latency_stats,
        "reasons": dict(sorted(Counter(v.reason for v in batch2).items())),
        "checks": failures,
        "verdicts_differ_1_vs_2_workers": differ_1_vs_2,
        "verdicts_differ_1_vs_2_workers_other_than_timeout": differ_beyond_deadline,
        "verdicts_differ_single_vs_batch": differ_single_vs_batch,
        "after_attack_wrong": after_attack_wrong,
        "canary_files": canaries,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "items": [
            {"name": i.name, "category": i.category, "reason": v.reason, "latency_s": round(t, 3)}
            for i, v, t in zip(items, single, latencies)
        ],
    }
    out = ROOT / "bench" / "results" / "grading_attack.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "items"}, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Grading throughput: N synthetic (completion, gold) pairs through a 2-worker Grader.

Usage: python bench/bench_grading.py [--n 2000]
Prints one JSON object and writes it to bench/results/grading.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections import Counter
from pathlib import Path

from intrain.grading import Grader

WORKERS = 2


def synthetic_item(rng: random.Random) -> tuple[str, str]:
    """One (completion, gold) pair; the mix covers the answer shapes of math RL data."""
    a, b = rng.randint(1, 999), rng.randint(2, 99)
    kind = rng.randrange(8)
    if kind == 0:
        gold, answer = str(a), str(a if rng.random() < 0.5 else a + 1)
    elif kind == 1:
        gold, answer = rf"\frac{{{a}}}{{{b}}}", f"{a / b:.6f}"
    elif kind == 2:
        gold, answer = rf"{a}\sqrt{{{b}}}", rf"\sqrt{{{a * a * b}}}"
    elif kind == 3:
        gold, answer = f"({a}, {a + b}]", rf"\left({a},{a + b}\right]"
    elif kind == 4:
        gold, answer = rf"\{{{a}, {b}\}}", f"{b},{a}"
    elif kind == 5:
        gold, answer = "Tuesday", rng.choice([r"\text{Tuesday}", r"\text{Monday}"])
    elif kind == 6:
        gold, answer = f"x={a}", rf"{a}\text{{ cm}}"
    else:
        return f"I think the answer is {a}.", str(a)  # no box: decided without a worker
    return f"Step 1 ... so the final answer is $\\boxed{{{answer}}}$.", gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of items to grade")
    args = parser.parse_args()

    rng = random.Random(0)
    items = [synthetic_item(rng) for _ in range(args.n)]
    with Grader(workers=WORKERS, timeout_s=10.0) as grader:
        start = time.perf_counter()
        grader.grade([items[0][0]] * WORKERS, [items[0][1]] * WORKERS)  # spawn + warm-up
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        verdicts = grader.grade([c for c, _ in items], [g for _, g in items])
        seconds = time.perf_counter() - start

    result = {
        "bench": "grading",
        "n": args.n,
        "workers": WORKERS,
        "seconds": round(seconds, 3),
        "items_per_s": round(args.n / seconds, 1),
        "startup_s": round(startup_s, 3),
        "reasons": dict(sorted(Counter(v.reason for v in verdicts).items())),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    out = Path(__file__).resolve().parent / "results" / "grading.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

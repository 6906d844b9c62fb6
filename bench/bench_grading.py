"""Grading throughput: our 2-worker Grader vs one subprocess per item, on the same N items.

Usage: python bench/bench_grading.py [--n 2000]

The baseline grades as per-item scripts do (the paper authors' grader among them): each item is
judged in a fresh child process with a 10 s deadline. Children are forked, two at a time (one per
core), from a parent that has already imported everything, so the baseline pays only the fork and the
per-item work; they apply our grader's rules (a string match, or two distinct integers, settle an item
before math-verify), so both sides compute the same verdicts, which is asserted. Ours: the persistent
worker pool. Prints one JSON object and writes it to bench/results/grading.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

from _machine import machine

from intrain.grading import CORRECT, MAX_ANSWER_CHARS, NO_ANSWER, PARSE_ERROR, WRONG, Grader, extract_boxed
from intrain.grading.answers import _distinct_integers, _same_string
from intrain.grading.worker import _compare

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


def _child(conn, gold: str, completion: str) -> None:
    """One item's verdict, decided as Grader.grade decides it (same shortcuts), in this process."""
    answer = extract_boxed(completion)
    try:
        if answer is None:
            reason = NO_ANSWER
        elif _same_string(gold, answer):
            reason = CORRECT
        elif len(answer) > MAX_ANSWER_CHARS:
            reason = PARSE_ERROR
        elif _distinct_integers(gold, answer):
            reason = WRONG
        else:
            reason = _compare(gold, answer)
    except Exception:
        reason = PARSE_ERROR
    conn.send(reason)


def one_process_per_item(item: tuple[str, str]) -> str:
    """Fork a child for the item, wait at most 10 s, kill it if it is still running."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, item[1], item[0]))
    process.start()
    child.close()
    reason = parent.recv() if parent.poll(10.0) else PARSE_ERROR
    process.join(1.0)
    if process.is_alive():
        process.kill()
        process.join()
    return reason


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

    from concurrent.futures import ThreadPoolExecutor

    _compare("1", "1")  # imports and parser warm-up happen once, in the parent the children fork from
    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        baseline = list(pool.map(one_process_per_item, items))
    baseline_s = time.perf_counter() - start
    ours = [v.reason == CORRECT for v in verdicts]
    theirs = [reason == CORRECT for reason in baseline]
    disagree = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert not disagree, f"verdicts differ on items {disagree[:10]}"

    result = {
        "name": "grading",
        "baseline": f"one forked subprocess per item, {WORKERS} at a time: {args.n / baseline_s:.1f} items/s",
        "ours": f"Grader with {WORKERS} persistent workers: {args.n / seconds:.1f} items/s",
        "ratio": round(baseline_s / seconds, 1),
        "unit": "items/s (ours / baseline); same verdicts on every item",
        "machine": machine(),
        "config": {"n": args.n, "workers": WORKERS, "timeout_s": 10.0, "items": "synthetic mix, seed 0"},
        "seconds": round(seconds, 3),
        "baseline_seconds": round(baseline_s, 3),
        "startup_s": round(startup_s, 3),
        "reasons": dict(sorted(Counter(v.reason for v in verdicts).items())),
    }
    out = Path(__file__).resolve().parent / "results" / "grading.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

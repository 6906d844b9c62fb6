"""Grader under attack (issue 11): hostile model outputs through the public Grader API.

The corpus is tests/fixtures/hostile_predictions.py (what each item promises is described there).
This file grades every cheap item and a few expensive ones (the bench grades all of them, see
bench/bench_grading_attack.py), with a short deadline to keep the suite fast, and checks:
no false positive, pinned verdicts, hedges credited at most once, each item back within the
deadline plus a margin, nothing executed, the same verdicts on 1 and 2 workers, and a pool that
still grades a normal batch right afterwards. Further tests cover the worker's sandbox, its
memory cap and a crash mid-batch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from intrain.grading import MAX_ANSWER_CHARS, Grader, Verdict, extract_boxed, normalize_answer

TIMEOUT_S = 2.0
# Allowed on top of the deadline: the parent's string work on megabyte items, the kill and the
# reply, and on a busy machine the wait for a replacement worker when both were just killed.
MARGIN_S = 3.0
# Expensive items (deadline runners) in the unit subset: each costs about TIMEOUT_S per pass.
EXPENSIVE_PER_CATEGORY = 1


def _load_corpus() -> ModuleType:
    # Loaded by path: tests/ is not a package, and "fixtures" is also the name of a PyPI package.
    path = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_predictions.py"
    spec = importlib.util.spec_from_file_location("hostile_predictions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()

NORMAL_BATCH = [
    (r"\frac{1}{2}", r"so \boxed{0.5}", "correct"),
    ("(1,2]", r"so \boxed{(1,2)}", "wrong"),
    (r"2\sqrt{3}", r"so \boxed{\sqrt{12}}", "correct"),
    ("Tuesday", r"so \boxed{\text{Monday}}", "wrong"),
    ("1000", r"so \boxed{1,000}", "correct"),
    (r"\{1,2,3\}", r"so \boxed{\{3,2,1\}}", "correct"),
    ("7", "no box here", "no_answer"),
]


@dataclasses.dataclass
class Graded:
    items: list[Any]
    verdicts: list[Verdict]
    latencies: list[float]
    after_attack: list[Verdict]
    stats: dict[str, int]


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary")


@pytest.fixture(scope="module")
def full_corpus(canary_dir: Path) -> list[Any]:
    return corpus.build_corpus(str(canary_dir))


@pytest.fixture(scope="module")
def subset(full_corpus: list[Any]) -> list[Any]:
    """All cheap items, plus the first expensive item of each category that has any."""
    picked: list[Any] = []
    taken: dict[str, int] = {}
    for item in full_corpus:
        if item.expensive:
            if taken.get(item.category, 0) >= EXPENSIVE_PER_CATEGORY:
                continue
            taken[item.category] = taken.get(item.category, 0) + 1
        picked.append(item)
    return picked


@pytest.fixture(scope="module")
def graded(subset: list[Any]) -> Graded:
    """Each item in its own call on a 2-worker pool (so each has its own latency), then a normal batch."""
    with Grader(workers=2, timeout_s=TIMEOUT_S) as grader:
        grader.grade([r"\boxed{1.0}"] * 2, ["1"] * 2)  # start both workers outside the clock
        verdicts, latencies = [], []
        for item in subset:
            start = time.monotonic()
            verdicts.extend(grader.grade([item.text], [item.gold]))
            latencies.append(time.monotonic() - start)
        after = grader.grade([text for _, text, _ in NORMAL_BATCH], [gold for gold, _, _ in NORMAL_BATCH])
        return Graded(subset, verdicts, latencies, after, dataclasses.asdict(grader.stats))


def test_corpus_size_and_categories(full_corpus: list[Any]):
    assert len(full_corpus) >= 200
    assert {item.category for item in full_corpus} == {
        "huge_numbers",
        "nesting",
        "megabytes",
        "injection",
        "malformed",
        "unicode",
        "control_chars",
        "nested_boxes",
        "astronomic_sums",
        "hedges",
    }
    pairs = [(item.text, item.gold) for item in full_corpus]
    assert len(set(pairs)) == len(pairs), "every item must be a distinct (completion, gold) pair"


def test_no_false_positives(graded: Graded):
    fooled = [(i.name, v.reason) for i, v in zip(graded.items, graded.verdicts) if v.correct and i.truth is False]
    assert not fooled


def test_pinned_verdicts(graded: Graded):
    mismatches = [(i.name, v.reason, i.expect) for i, v in zip(graded.items, graded.verdicts) if i.expect]
    assert [m for m in mismatches if m[1] != m[2]] == []
    assert len(mismatches) >= 40  # the pins are a real part of the subset


def test_hedges_are_credited_at_most_once(graded: Graded):
    credited: dict[str, int] = {}
    for item, verdict in zip(graded.items, graded.verdicts):
        if item.hedge and verdict.correct:
            credited[item.hedge] = credited.get(item.hedge, 0) + 1
    assert {group: n for group, n in credited.items() if n > 1} == {}


def test_every_item_returns_within_the_deadline(graded: Graded):
    slow = [(i.name, round(t, 2)) for i, t in zip(graded.items, graded.latencies) if t > TIMEOUT_S + MARGIN_S]
    assert slow == []
    # The subset does exercise the deadline: kills happened and the pool replaced those workers.
    assert graded.stats["timeouts"] >= 3
    assert graded.stats["replaced"] >= graded.stats["timeouts"]


def test_nothing_executes(graded: Graded, canary_dir: Path):
    # Injection items name files in canary_dir (and one kills the parent, one opens a debugger);
    # the fixture having finished is the parent surviving, the directory must still be empty.
    assert any(i.category == "injection" for i in graded.items)
    assert sorted(os.listdir(canary_dir)) == []


def test_pool_still_grades_a_normal_batch(graded: Graded):
    assert [v.reason for v in graded.after_attack] == [want for _, _, want in NORMAL_BATCH]


def test_one_worker_gives_the_same_verdicts(graded: Graded):
    with Grader(workers=1, timeout_s=TIMEOUT_S) as grader:
        batch = grader.grade([i.text for i in graded.items], [i.gold for i in graded.items])
    differ = [(i.name, a.reason, b.reason) for i, a, b in zip(graded.items, graded.verdicts, batch) if a != b]
    assert differ == []


def test_parent_string_work_stays_linear():
    # Recursive unwrapping raised RecursionError at ~1000 nested \text{} and took quadratic time.
    deep = r"\text{" * 100_000 + "5" + "}" * 100_000
    start = time.monotonic()
    assert normalize_answer(deep) == "5"
    assert extract_boxed(r"\boxed{" + deep + "}") == deep
    assert extract_boxed(r"\boxed{" + "{}" * 500_000 + "}") is not None
    assert time.monotonic() - start < 10  # about 1 s on a shared 2-core machine


def test_over_long_answers_skip_the_workers():
    with Grader(workers=1, timeout_s=TIMEOUT_S) as grader:
        long_wrong = r"\boxed{" + "1+" * MAX_ANSWER_CHARS + "1}"
        long_equal = r"\boxed{" + "7" * (2 * MAX_ANSWER_CHARS) + "}"
        verdicts = grader.grade([long_wrong, long_equal], ["5", "7" * (2 * MAX_ANSWER_CHARS)])
        assert [v.reason for v in verdicts] == ["parse_error", "correct"]
        assert grader._pool == []  # neither needed a worker
        assert grader.stats.over_long == 1


def test_worker_sandbox_refuses_side_effects(tmp_path: Path):
    # What an injection would do if math-verify ever evaluated model text: run it after the
    # worker's hardening, in a fresh interpreter standing in for a worker.
    code = f"""
import os, socket, subprocess, sys
from intrain.grading.worker import _harden_worker
_harden_worker(None)
canary = {str(tmp_path / "canary")!r}
attempts = {{
    "system": lambda: os.system("touch " + canary),
    "popen": lambda: subprocess.run(["touch", canary]),
    "open_write": lambda: open(canary, "w"),
    "os_open": lambda: os.open(canary, os.O_WRONLY | os.O_CREAT),
    "kill_parent": lambda: os.kill(os.getppid(), 0),
    "fork": lambda: os._exit(0) if os.fork() == 0 else None,  # a child that got through exits
    "socket": lambda: socket.socket(),
    "mkdir": lambda: os.mkdir(canary + "_dir"),
}}
refused = []
for name, attempt in attempts.items():
    try:
        attempt()
    except PermissionError:
        refused.append(name)
open(sys.executable, "rb").close()  # reading stays allowed: lazy imports need it
print(",".join(refused))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == [
        "system",
        "popen",
        "open_write",
        "os_open",
        "kill_parent",
        "fork",
        "socket",
        "mkdir",
    ]
    assert os.listdir(tmp_path) == []


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads worker memory from /proc (Linux)")
def test_memory_cap_stops_a_gigabyte_allocation():
    cap = 128 * 1024**2
    # 2^(10^10) is a 1.25 GB integer: without a cap SymPy builds it past any deadline (the bench
    # shows timeouts); with one the allocation fails, math-verify reads the failure as "not equal",
    # and the worker stays within its allowance and serves on.
    with Grader(workers=1, timeout_s=60.0, worker_memory_bytes=cap) as grader:
        assert grader.grade([r"\boxed{1.0}"], ["1"])[0].correct
        pid = grader._pool[0].proc.pid
        baseline_kib = _vm_kib(pid, "VmSize")
        start = time.monotonic()
        verdicts = grader.grade([r"\boxed{2^{10^{10}}}", r"\boxed{0.5}"], ["5", r"\frac{1}{2}"])
        elapsed = time.monotonic() - start
        assert [v.reason for v in verdicts] in (["wrong", "correct"], ["parse_error", "correct"])
        assert elapsed < 60.0 and grader.stats.timeouts == 0
        if grader._pool[0].proc.pid == pid:  # not retired: its peak is readable
            assert _vm_kib(pid, "VmPeak") <= baseline_kib + cap // 1024 + 8 * 1024
        else:
            assert grader.stats.memory_exhausted == 1
        assert grader.grade([r"\boxed{2.0}"], ["2"])[0].correct


def test_worker_near_its_cap_retires_and_is_replaced():
    # With a 2 MiB allowance, a worker passes half of it within a few ordinary items (lazy imports,
    # SymPy's caches): it replies, exits, and a fresh worker takes the next item. Allocations that
    # fail on the way may cost verdicts (0, never a false positive), not the pool.
    with Grader(workers=1, timeout_s=60.0, worker_memory_bytes=2 * 1024**2) as grader:
        golds = ["(1,2]", r"\{1,2,3\}", r"\frac12", "(x+1)^2", "3"]
        texts = [r"\boxed{(1,2)}", r"\boxed{\{3,2,1\}}", r"\boxed{0.5}", r"\boxed{x^2+2x+1}", r"\boxed{4.0}"]
        verdicts = grader.grade(texts, golds)
        assert grader.stats.memory_exhausted >= 1
        assert grader.stats.replaced == grader.stats.memory_exhausted
        assert grader.stats.timeouts == grader.stats.crashes == 0
        assert not verdicts[0].correct and not verdicts[4].correct
        assert all(v.reason in ("correct", "wrong", "parse_error") for v in verdicts)


def test_worker_crash_costs_only_its_own_item():
    # A worker that segfaults (here: is sent SIGSEGV) mid-item is replaced; that item scores
    # parse_error at once (a crash caused by the input would only repeat, so no retry) and every
    # other item of the batch keeps its verdict.
    with Grader(workers=2, timeout_s=60.0) as grader:
        grader.grade([r"\boxed{1.0}"] * 2, ["1"] * 2)
        crashed: list[int] = []

        def crash_the_slow_item() -> None:
            deadline = time.monotonic() + 30
            while not crashed and time.monotonic() < deadline:
                for worker in list(grader._pool):
                    if worker.job == 0:  # payload 0 is the slow item below
                        os.kill(worker.proc.pid, signal.SIGSEGV)
                        crashed.append(worker.proc.pid)
                        break
                time.sleep(0.005)

        killer = threading.Thread(target=crash_the_slow_item)
        killer.start()
        golds = ["1"] + [str(i) for i in range(2, 10)]
        texts = [r"\boxed{9^{9^{9}}}"] + [rf"\boxed{{{i}.0}}" for i in range(2, 10)]
        verdicts = grader.grade(texts, golds)
        killer.join()
        assert crashed
        assert [v.reason for v in verdicts] == ["parse_error"] + ["correct"] * 8
        assert grader.stats.crashes == 1 and grader.stats.replaced == 1

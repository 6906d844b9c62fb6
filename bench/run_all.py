"""Run the benchmarks in bench/ one after another (each writes bench/results/<name>.json).

    python bench/run_all.py          # `make bench`: grading, engine, sampler, prefix, decode and the demo
    python bench/run_all.py --all    # also the grader under attack (~25 min more)

Run by hand, as they need an argument or a long slot: bench_sft_packing.py, bench_int8.py, bench_waves.py RUN_DIR and
bench_prefix_groups.py RUN_DIR (a demo run directory), bench_revisions.py REV (another git revision's engine).

One at a time on purpose: two benchmarks side by side on a 2-core machine distort each other.
"""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
RUNS = [
    ["bench_grading.py"],
    ["bench_engine.py", "--shape", "tiny", "--out", str(here / "results" / "engine_cpu_tiny.json")],
    ["bench_engine.py", "--shape", "smollm2", "--out", str(here / "results" / "engine_cpu_smollm2.json")],
    ["bench_sampler.py"],
    ["bench_prefix.py"],
    ["bench_decode.py"],
    ["bench_demo.py"],
]
if "--all" in sys.argv:
    RUNS.append(["bench_grading_attack.py"])
for script, *args in RUNS:
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(here / script), *args], check=True)

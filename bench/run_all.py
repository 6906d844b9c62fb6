"""Run the benchmarks in bench/ one after another (each writes bench/results/<name>.json).

    python bench/run_all.py          # `make bench`: grading, engine (tiny, SmolLM2), shared-prefix prefill,
                                     # SFT packing, the demo, then the filter's waves on the demo's candidates
    python bench/run_all.py --all    # also the decode stream, the sampler (~5 min), the grader under attack (~25 min)

Run by hand, as they need an argument or a long slot: bench_int8.py, bench_prefix_groups.py RUN_DIR (a demo run
directory), bench_revisions.py REV (another git revision's engine), and the full-size bench_waves.py RUN_DIR.

One at a time on purpose: two benchmarks side by side on a 2-core machine distort each other.
"""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

here = Path(__file__).parent
scratch = Path(tempfile.mkdtemp(prefix="intrain-bench-"))
demo_dir = scratch / "demo"  # the waves run on this demo's proposals
RUNS = [
    ["bench_grading.py"],
    ["bench_engine.py", "--shape", "tiny", "--out", str(here / "results" / "engine_cpu_tiny.json")],
    ["bench_engine.py", "--shape", "smollm2", "--out", str(here / "results" / "engine_cpu_smollm2.json")],
    ["bench_prefix.py"],
    ["bench_sft_packing.py"],
    ["bench_demo.py", "--keep", str(demo_dir)],
    ["bench_waves.py", str(demo_dir), "--candidates", "16"],
]
if "--all" in sys.argv:
    RUNS += [["bench_decode.py"], ["bench_sampler.py"], ["bench_grading_attack.py"]]
start = time.perf_counter()
try:
    for script, *args in RUNS:
        print(f"== {script} {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(here / script), *args], check=True)
        print(f"== {script}: {time.perf_counter() - t0:.0f} s", flush=True)
finally:
    shutil.rmtree(scratch, ignore_errors=True)
print(f"== all: {time.perf_counter() - start:.0f} s", flush=True)

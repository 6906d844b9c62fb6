"""Wall time of `intrain demo` (the README's main job) from a fresh run directory, per stage.

The embedded model's one-time conversion is done first and not counted (a second `make demo`
never pays it). Writes bench/results/demo.json. `--keep DIR` runs in DIR and keeps it (e.g. to
run `intrain compare demo --run-dir DIR` on the same shared stages afterwards).
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    from intrain.models import resolve_model_path

    resolve_model_path("embedded:smollm2")
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    run_dir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="intrain-demo-"))
    if keep and run_dir.exists():
        raise SystemExit(f"{run_dir} exists; the benchmark needs a fresh run directory")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "intrain.cli", "demo", "--run-dir", str(run_dir)], check=True)
    wall = time.time() - t0
    summary = json.loads((run_dir / "summary.json").read_text())
    result = {
        "benchmark": "intrain demo",
        "wall_s": round(wall, 1),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "stage_wall_s": {k: v.get("wall_s") for k, v in summary["stage_timings"].items()},
        "funnel": summary["funnel"],
        "eval": {k: v["overall"] for k, v in summary["eval"].items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not keep:
        shutil.rmtree(run_dir)


if __name__ == "__main__":
    main()

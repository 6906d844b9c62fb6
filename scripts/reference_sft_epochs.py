"""Reference SFT at several epoch counts: what the SFT checkpoint does before any RL.

    python scripts/reference_sft_epochs.py CONFIG --run-root DIR --epochs 2 8 32 [--marker "Step 1:"]

For each epoch count, in DIR/e<epochs>: the base eval, the `sft_reference` arm's SFT with
`sft.epochs` set, the eval of that checkpoint, and its mean next-token entropy on the base's eval
rollouts (what `intrain compare` reports as entropy at RL start). `--marker` counts the held-out
samples that contain a string, e.g. the first words of a reference style. Prints one JSON line per
epoch count and writes DIR/summary.json. Used in docs/LAB.md to see whether cloning references in
a foreign style (scripts/restyle_references.py) disrupts the model once it adopts that style.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def measure(config_path: str, run_dir: Path, epochs: int, marker: str | None) -> dict[str, object]:
    from intrain import compare
    from intrain.config import load_config
    from intrain.records import Rollout
    from intrain.stages import evaluate
    from intrain.stages.common import RunContext

    config = load_config(config_path, overrides=[f"sft.epochs={epochs}"])
    ctx = RunContext(config, run_dir)
    try:
        base = evaluate.run(ctx, label="base")
        init, _ = compare.prepare_init(ctx, "sft_reference")
        evaluated = evaluate.run(ctx, label="sft_reference-sft", model_path=init)
        samples = evaluated.records(Rollout)
        overall = json.loads((evaluated.path / "eval.json").read_text())["overall"]
        counts = json.loads((run_dir / "sft-reference" / "manifest.json").read_text())["counts"]
        row: dict[str, object] = {
            "epochs": epochs,
            "sft_steps": counts["steps"],
            "first_loss": counts["first_loss"],
            "last_loss": counts["last_loss"],
            "entropy": compare.mean_token_entropy(ctx, init, base.records(Rollout)),
        }
        row |= {f"pass@{k}": overall[f"pass@{k}"] for k in config.eval.ks}
        if marker is not None:
            row["samples_with_marker"] = [sum(marker in s.completion for s in samples), len(samples)]
        return row
    finally:
        ctx.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a config whose data.train holds the references to clone")
    parser.add_argument("--run-root", required=True, help="one run directory per epoch count goes here")
    parser.add_argument("--epochs", type=int, nargs="+", required=True)
    parser.add_argument("--marker", help="count the held-out samples that contain this string")
    args = parser.parse_args()
    root = Path(args.run_root)
    rows = []
    for epochs in args.epochs:
        rows.append(measure(args.config, root / f"e{epochs}", epochs, args.marker))
        print(json.dumps(rows[-1]), flush=True)
    (root / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # the grading pool spawns workers that import this module
    raise SystemExit(main())

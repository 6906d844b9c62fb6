"""Proposer skill of warm-up adapters on a warm-up run's held-out attempts, over several sampling seeds.

    python scripts/warmup_skill.py CONFIG --examples RUN/warmup/examples.json \
        --adapters A [B ...] --seeds 1 2 3 [--out FILE.json] [--set propose.temperature=0.3 ...]

`intrain warmup` measures its adapter once, with one sampling seed. This samples one proposal per
held-out attempt for each adapter and seed (the `propose` settings of CONFIG, at most
`warmup.proposal_max_tokens` tokens) and scores it as the warm-up does. Per adapter it reports the
location accuracy averaged over seeds with a bootstrap interval over attempts, and each further
adapter's paired difference from the first (same attempts, same seeds). Used in docs/RESULTS.md §1
to tell whether a location over 0.60 was a lucky draw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intrain.config import Config


def measure(cfg: Config, examples_path: Path, adapters: list[str], seeds: list[int]) -> dict[str, Any]:
    import tempfile

    from intrain.prompts import load_template
    from intrain.stages.common import RunContext
    from intrain.stats import bootstrap_mean_interval, paired_bootstrap_difference
    from intrain.warmup import evaluate_proposer, load_examples, skill_sampling

    examples = load_examples(examples_path, "heldout")
    template = load_template(cfg.propose.template)
    runs: list[dict[str, Any]] = []
    per_attempt: list[dict[str, float]] = []  # per adapter, in order: attempt -> share of seeds located
    with tempfile.TemporaryDirectory() as scratch:
        ctx = RunContext(cfg, Path(scratch))
        try:
            for adapter in adapters:
                generator = ctx.generator(cfg.model, cfg.model.path, adapter=adapter)
                hits = [0] * len(examples)
                for seed in seeds:
                    sampling = skill_sampling(cfg, seed)
                    skill = evaluate_proposer(
                        generator, examples, template, cfg.propose.max_prompt_tokens, cfg.propose.separator, sampling
                    )
                    hits = [h + x for h, x in zip(hits, skill["located"])]
                    run = {"adapter": adapter, "seed": seed} | {
                        k: skill[k] for k in ("parse_rate", "location_accuracy", "leak_rate_among_parsed", "by_origin")
                    }
                    runs.append(run)
                    print(json.dumps(run), flush=True)
                per_attempt.append({str(i): h / len(seeds) for i, h in enumerate(hits)})
        finally:
            ctx.close()
    summary = []
    for index, adapter in enumerate(adapters):
        values = list(per_attempt[index].values())
        row: dict[str, Any] = {
            "adapter": adapter,
            "location_accuracy": sum(values) / len(values),
            "interval": bootstrap_mean_interval(values),
        }
        if index:
            row["difference_from_first"] = paired_bootstrap_difference(per_attempt[index], per_attempt[0])
        summary.append(row)
    origins = {origin: sum(ex.origin == origin for ex in examples) for origin in sorted({ex.origin for ex in examples})}
    return {"examples": str(examples_path), "attempts": origins, "seeds": seeds, "runs": runs, "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the config the adapters were warmed with (model, propose and warmup sections)")
    parser.add_argument("--examples", required=True, type=Path, help="RUN/warmup/examples.json of a warm-up run")
    parser.add_argument("--adapters", nargs="+", required=True, help="adapter folders; the first is the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="one proposal per attempt per seed")
    parser.add_argument("--out", type=Path, help="write the result here as JSON")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override, as intrain --set"
    )
    args = parser.parse_args()
    if not args.examples.is_file():
        parser.error(f"--examples {args.examples}: no such file")
    for adapter in args.adapters:
        if not (Path(adapter) / "adapter_config.json").is_file():
            parser.error(f"--adapters {adapter}: not an adapter folder (no adapter_config.json)")
    from intrain.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    result = measure(cfg, args.examples, args.adapters, args.seeds)
    for row in result["summary"]:
        lo, hi = row["interval"]
        line = f"{row['adapter']}: location {row['location_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"
        if "difference_from_first" in row:
            d, lo, hi = row["difference_from_first"]
            line += f", minus the first {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        print(line)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # the grading pool spawns workers that import this module
    raise SystemExit(main())

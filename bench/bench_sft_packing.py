"""SFT steps on padding-free (packed) batches vs padded ones, the loss of each batch asserted equal.

    python bench/bench_sft_packing.py [--rows 8] [--batch 4] [--reps 2]

TRL's `DataCollatorForLanguageModeling` pads a batch's rows to its longest (what the SFT stage
trains on), or with `padding_free=True` concatenates them into one row whose `position_ids` restart
at each row, which transformers' attention reads as separate sequences (no attention across rows).
Rows: the warm-up's proposer rows (prompt masked, target = the intervention), on the embedded
SmolLM2 + warm-up adapter in float32 (the demo's SFT model), `--batch` rows per step in a fixed
shuffled order. Checked per batch: the same target tokens (labels after the shift) and the same
loss (1e-4). Timed: forward + backward of every batch, alternating the two layouts; tokens/s counts
real (non-pad) tokens. Every forward runs with `use_cache=False`, as TRL's SFTTrainer.compute_loss
sets it: with a KV cache transformers does not read `position_ids` as row boundaries, and the
padding-free loss is then wrong (rows attend to each other). Writes bench/results/sft_packing.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from _machine import machine

from intrain.store import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "sft_packing.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from intrain.config import load_config
    from intrain.data.arithmetic import generate_arithmetic
    from intrain.models import load_for_training
    from intrain.prompts import load_template
    from intrain.warmup import synthetic_examples, training_rows

    cfg = load_config("demo")
    model, tok = load_for_training(cfg.model.path, "cpu", "auto", cfg.model.adapter)
    family = cfg.data.train
    problems = generate_arithmetic(
        args.rows, 11, steps=family.steps, max_operand=family.max_operand, max_result=family.max_result
    )
    template = load_template(cfg.propose.template)
    rows = training_rows(
        synthetic_examples(problems, seed=11),
        tok,
        template,
        cfg.propose.max_prompt_tokens,
        cfg.propose.separator,
        cfg.model.chat_template_kwargs,
    )
    random.Random(0).shuffle(rows)
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    padded = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)
    packed = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)
    layouts = {"padded": [padded(b) for b in batches], "padding-free": [packed(b) for b in batches]}
    real_tokens = sum(len(r["input_ids"]) for r in rows)
    fed = {name: sum(int(x["input_ids"].numel()) for x in batch) for name, batch in layouts.items()}

    def targets(x) -> list[int]:
        return [int(t) for t in x["labels"][:, 1:].flatten() if t != -100]

    model.eval()
    with torch.no_grad():
        for a, b in zip(layouts["padded"], layouts["padding-free"]):
            assert targets(a) == targets(b), "the layouts train on different target tokens"
            loss_a, loss_b = model(**a, use_cache=False).loss.item(), model(**b, use_cache=False).loss.item()
            assert abs(loss_a - loss_b) < 1e-4, f"losses differ: padded {loss_a} vs padding-free {loss_b}"
    model.train()

    def step_all(name: str) -> float:
        t0 = time.perf_counter()
        for x in layouts[name]:
            model(**x, use_cache=False).loss.backward()
            model.zero_grad(set_to_none=True)
        return real_tokens / (time.perf_counter() - t0)

    runs: dict[str, list[float]] = {"padded": [], "padding-free": []}
    for _ in range(args.reps):
        for name in runs:
            runs[name].append(step_all(name))
            print(f"{name}: {runs[name][-1]:.1f} tok/s ({fed[name]} tokens fed)", flush=True)
    baseline, ours = (sum(runs[k]) / args.reps for k in ("padded", "padding-free"))
    result = {
        "name": "sft_padding_free",
        "baseline": f"padded batches: {baseline:.1f} tok/s, {fed['padded']} tokens fed",
        "ours": f"padding-free batches: {ours:.1f} tok/s, {fed['padding-free']} tokens fed",
        "ratio": round(ours / baseline, 2),
        "unit": "real tokens/s of forward + backward, mean over reps (ours / baseline); same loss asserted",
        "machine": machine(),
        "config": {
            "model": "embedded:smollm2 + warm-up adapter, float32",
            "rows": f"{len(rows)} warm-up proposer rows, {real_tokens} tokens",
            "batch": args.batch,
            "reps": args.reps,
        },
        "tok_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

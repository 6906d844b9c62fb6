"""`intrain lab hard-split`: the problems the policy fails on all of K samples, the paper's way.

The paper trains InT on problems its base model never solves (its hard set: 0 of K samples correct),
where outcome-reward RL has no signal. This samples `lab.hard_k` graded rollouts per problem of
`data.train` and of `data.eval` with `sample`'s settings, one resumable stage per split
(`lab-hard-train`, `lab-hard-eval`), and writes each split's hard problems as JSONL that any config
reads back as a file source: `data.train: {kind: file, path: RUN/lab-hard-train/hard.jsonl}`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from intrain import fingerprints
from intrain.progress import console
from intrain.records import Rollout
from intrain.stages.common import RunContext
from intrain.stages.rollouts import write_rollouts
from intrain.store import Stage

HARD_FILE = "hard.jsonl"


def run(ctx: RunContext) -> dict[str, Any]:
    splits = ("train", "eval") if ctx.config.data.eval is not None else ("train",)
    summary = {split: split_stage(ctx, split).counts() for split in splits}
    for split, counts in summary.items():
        path = ctx.run_dir / f"lab-hard-{split}" / HARD_FILE
        console.print(
            f"hard-split {split}: {counts['hard']} of {counts['problems']} problems with 0/{counts['k']} correct "
            f"-> data.{split}: {{kind: file, path: {path}}}"
        )
    return summary


def split_stage(ctx: RunContext, split: str) -> Stage:
    cfg = ctx.config
    stage = ctx.open_stage(f"lab-hard-{split}", fingerprints.LAB_HARD_SPLIT)
    if stage.complete:
        return stage
    problems = ctx.problems(split)
    in_train = 0
    if split == "eval":
        # A held-out hard problem must be unseen: generated families can draw the same problem for both splits.
        train_texts = {p.problem for p in ctx.problems("train")}
        kept = [p for p in problems if p.problem not in train_texts]
        in_train, problems = len(problems) - len(kept), kept
    sampling = cfg.sample.model_copy(update={"n": cfg.lab.hard_k})
    timings = write_rollouts(ctx, stage, problems, sampling, f"hard-split {split}")
    solved: dict[str, int] = defaultdict(int)
    for r in stage.records(Rollout):
        solved[r.problem_id] += r.correct
    hard = [p for p in problems if solved[p.id] == 0]
    rows = [
        {
            "id": p.id,
            "problem": p.problem,
            "answer": p.answer,
            "reference_solution": p.reference_solution,
            "source": p.source,
        }
        for p in hard
    ]
    stage.write_text(HARD_FILE, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    counts = {"problems": len(problems), "k": cfg.lab.hard_k, "hard": len(hard), "solved": len(problems) - len(hard)}
    if split == "eval":
        counts["dropped_in_train"] = in_train
    stage.finish(counts, timings)
    return stage

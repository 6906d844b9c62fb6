"""The report's numbers that need a model, on the CPU in inference mode, over capped samples:

* on-policy-ness (the paper's Fig. 9): mean per-token negative log-likelihood under the base model of
  InT's SFT targets, of the reference solutions and of the other arms' SFT data. Low NLL = text the
  base model could have written itself; cloning it moves the model less.
* next-token entropy before and after SFT (the paper's Fig. 8), through `compare.mean_token_entropy`
  on the base policy's eval completions, or read from compare.json when `intrain compare` wrote it.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from intrain.config import Config
from intrain.records import Rollout, SFTExample
from intrain.report.collect import Run
from intrain.store import read_records_so_far

# SFT stages of the arms (`intrain compare`) and what their targets are.
SFT_KINDS = {
    "sft": "InT: own prefix + intervention",
    "sft-reference": "reference solutions",
    "sft-rft": "RFT: own correct samples",
    "sft-reflection": "self-reflections",
}


@dataclass
class NLL:
    kind: str
    stage: str  # where the rows came from
    per_row: list[float] = field(default_factory=list)  # mean NLL per target token of each sampled row
    tokens: int = 0  # target tokens scored
    total: float = 0.0  # their summed NLL

    @property
    def mean(self) -> float:
        """Token-weighted: the per-token NLL of all the sampled rows' target tokens together."""
        return self.total / max(1, self.tokens)


def base_model(run: Run, config: Config | None) -> tuple[str, str | None] | None:
    """The base policy (path, adapter): the config's model, else the one eval-base evaluated."""
    if config is not None:
        return config.model.path, config.model.adapter
    eval_json = run.path / "eval-base" / "eval.json"
    if eval_json.exists():
        model = json.loads(eval_json.read_text()).get("model") or {}
        if model.get("path"):
            return model["path"], model.get("adapter")
    return None


def sft_data_nll(run: Run, path: str, adapter: str | None, limit: int, seed: int = 0) -> list[NLL]:
    """Per-token NLL under (path, adapter) of up to `limit` rows of each SFT stage the run has. Without an
    sft-reference stage, the reference solutions are scored after the InT rows' own prompts."""
    import torch

    from intrain.models import load_model_and_tokenizer

    rows: dict[str, tuple[str, list[SFTExample]]] = {}
    for stage, kind in SFT_KINDS.items():
        if run.complete(stage):
            found = read_records_so_far(run.path, stage, SFTExample)
            if found:
                rows[kind] = (stage, _sample(found, limit, seed))
    if not rows:
        return []
    with _no_loading_bars():
        model, tokenizer = load_model_and_tokenizer(path, device="cpu", dtype="float32", adapter=adapter)
    if "sft" in {stage for stage, _ in rows.values()} and not run.complete("sft-reference"):
        references = _references_after_int_prompts(run, rows[SFT_KINDS["sft"]][1], tokenizer)
        if references:
            rows[SFT_KINDS["sft-reference"] + " (after the InT rows' prompts)"] = ("sample", references)
    out = []
    with torch.inference_mode():
        for kind, (stage, examples) in rows.items():
            result = NLL(kind, stage)
            for example in examples:
                total, count = _target_nll(model, example.input_ids, example.labels)
                if count:
                    result.per_row.append(total / count)
                    result.total += total
                    result.tokens += count
            out.append(result)
    del model
    return out


@contextlib.contextmanager
def _no_loading_bars() -> Iterator[None]:
    """No "Loading weights" bar per model the report loads (it says nothing here); restored afterwards."""
    from transformers.utils import logging

    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            logging.enable_progress_bar()


def _sample(items: list[Any], limit: int, seed: int) -> list[Any]:
    return items if len(items) <= limit else random.Random(seed).sample(items, limit)


def _target_nll(model: Any, input_ids: list[int], labels: list[int]) -> tuple[float, int]:
    """(summed NLL, count) of the tokens whose label is not -100, each predicted from the tokens before it."""
    import torch

    ids = torch.tensor([input_ids])
    logits = model(ids).logits[0, :-1].float()
    targets = torch.tensor(labels[1:])
    scored = targets != -100
    if not bool(scored.any()):
        return 0.0, 0
    logp = torch.log_softmax(logits[scored], dim=-1)
    picked = logp.gather(1, targets[scored].unsqueeze(1)).squeeze(1)
    return float(-picked.sum()), int(scored.sum())


def _references_after_int_prompts(run: Run, int_rows: list[SFTExample], tokenizer: Any) -> list[SFTExample]:
    """Each sampled InT row's prompt tokens followed by its problem's reference solution (no end-of-turn,
    like the InT target): the same problems and rendering, another continuation."""
    reference = {r.problem_id: r.reference_solution for r in read_records_so_far(run.path, "sample", Rollout)}
    out = []
    for row in int_rows:
        text = reference.get(row.problem_id, "")
        if not text.strip():
            continue
        prompt = row.input_ids[: next(i for i, label in enumerate(row.labels) if label != -100)]
        target = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(SFTExample(row.problem_id, row.problem, text, prompt + target, [-100] * len(prompt) + target))
    return out


# --------------------------------------------------------------------------------------- entropy


@dataclass
class Entropy:
    arm: str
    model: str | None  # the checkpoint measured; None = the base policy
    nats: float


def entropy_from_compare(run: Run) -> list[Entropy]:
    """compare.json's entropy at RL start per arm (`base` = before any SFT); [] without compare.json."""
    path = run.path / "compare.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    out = []
    for arm, row in data.get("summary", {}).items():
        value = row.get("entropy_at_rl_start")
        if value is not None:
            out.append(Entropy(arm, data.get("arms", {}).get(arm, {}).get("init"), float(value)))
    return out


def entropy_before_after(run: Run, config: Config, limit: int) -> list[Entropy]:
    """Mean next-token entropy of the base policy and of each SFT stage's model over the same texts: the
    base eval's completions (the sample stage's when there is no eval-base), on the CPU."""
    from intrain.compare import mean_token_entropy
    from intrain.stages.common import RunContext

    texts_stage = "eval-base" if run.complete("eval-base") else "sample"
    rollouts = read_records_so_far(run.path, texts_stage, Rollout)
    if not rollouts:
        return []
    cpu = config.model_copy(update={"model": config.model.model_copy(update={"device": "cpu", "dtype": "float32"})})
    ctx = RunContext(config=cpu, run_dir=run.path)
    try:
        with _no_loading_bars():
            out = [Entropy("base", None, mean_token_entropy(ctx, None, rollouts, limit))]
            for stage in SFT_KINDS:
                model = run.manifests.get(stage, {}).get("model") if run.complete(stage) else None
                if model:
                    out.append(Entropy(stage, model, mean_token_entropy(ctx, model, rollouts, limit)))
    finally:
        ctx.close()
    return out

"""What a run's stage folders say, as plain data for the report: the funnel, first-error locations, RL
step logs, pass@k curves with bootstrap intervals, and a gallery of attempts. No model, no plotting.

Counts of finished stages come from their manifests (the numbers the pipeline printed); rows of a stage
still running are read as far as they go (store.read_records_so_far) and marked so.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intrain.config import ConfigError
from intrain.interventions import STATUSES
from intrain.metrics import pass_at_k
from intrain.records import FilterResult, Proposal, Rollout, SFTExample
from intrain.steps import DEFAULT_SEPARATOR, split_substeps
from intrain.store import MANIFEST_NAME, read_records_so_far
from intrain.training.grpo import LOG_NAME, read_log

# Statuses whose `location` is a substep the attempt has (parsed, and inside the shown substeps).
LOCATED = ("ok", "leak", "not_first")


@dataclass
class Run:
    """A run directory and the manifests of its stage folders."""

    path: Path
    manifests: dict[str, dict[str, Any]]

    def has(self, stage: str) -> bool:
        return stage in self.manifests

    def complete(self, stage: str) -> bool:
        return self.manifests.get(stage, {}).get("status") == "complete"

    def counts(self, stage: str) -> dict[str, Any]:
        return self.manifests.get(stage, {}).get("counts") or {}

    def stages(self, prefix: str) -> list[str]:
        """Stage names equal to `prefix` or starting with `prefix-`, in the order they were created."""
        return [n for n in self.manifests if n == prefix or n.startswith(prefix + "-")]


# The pipeline's order of stages, for stages created within the same second (manifests keep seconds).
_PIPELINE_ORDER = ("sample", "eval-base", "propose", "filter", "reflect", "sft", "sft-", "rl", "rl-", "eval-")


def _pipeline_rank(name: str) -> int:
    return next((i for i, p in enumerate(_PIPELINE_ORDER) if name == p or (p.endswith("-") and name.startswith(p))), 99)


def stage_manifests(path: Path) -> dict[str, dict[str, Any]]:
    """Each stage folder's manifest (a folder with a readable manifest.json is a stage), in the order the
    stages were created (the pipeline's order within a second)."""
    found: dict[str, dict[str, Any]] = {}
    for manifest in Path(path).glob(f"*/{MANIFEST_NAME}"):
        try:
            found[manifest.parent.name] = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # written atomically, so unreadable means not ours (or no permission): not a stage here

    def order(item: tuple[str, dict[str, Any]]) -> tuple[str, int, str]:
        return str(item[1].get("created", "")), _pipeline_rank(item[0]), item[0]

    return dict(sorted(found.items(), key=order))


def open_run(path: Path) -> Run:
    """The run at `path`; a one-line error when it is missing or holds no stage folder."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    manifests = stage_manifests(path)
    if not manifests:
        raise ConfigError(f"{path}: not a run directory (no stage folder with a {MANIFEST_NAME})")
    return Run(path, manifests)


# ----------------------------------------------------------------------------------------- funnel


@dataclass
class FunnelRow:
    step: str
    total: int
    by_source: dict[str, int | None]
    running: bool = False  # the stage has not finished: rows so far, not its final count


def funnel(run: Run) -> tuple[list[str], list[FunnelRow], list[str]]:
    """(sources, rows, notes): problems -> rollouts -> failed -> proposals -> statuses -> kept -> SFT rows."""
    notes: list[str] = []
    if not run.has("sample"):
        return [], [], ["the sample stage has not run: nothing to count"]
    rollouts = read_records_so_far(run.path, "sample", Rollout)
    source_of = {r.problem_id: r.source for r in rollouts}
    sources = sorted(set(source_of.values()))
    rows: list[FunnelRow] = []

    def add(step: str, stage: str, key: str, per_source: Counter[str], exact: bool = True) -> None:
        running = not run.complete(stage)
        total = sum(per_source.values()) if running else run.counts(stage).get(key, sum(per_source.values()))
        cells: dict[str, int | None] = {s: (per_source.get(s, 0) if exact else None) for s in sources}
        rows.append(FunnelRow(step, int(total), cells, running))

    add("problems", "sample", "problems", Counter(source_of.values()))
    add("rollouts", "sample", "rollouts", Counter(r.source for r in rollouts))
    add("failed rollouts", "sample", "failed", Counter(r.source for r in rollouts if not r.correct))
    if not run.has("propose"):
        return sources, rows, ["the propose stage has not run: the funnel stops at the failed rollouts"]
    proposals = read_records_so_far(run.path, "propose", Proposal)
    attempts = {p.attempt_id: p.source for p in proposals}
    add("attempts proposed on", "propose", "failed_attempts", Counter(attempts.values()))
    add("proposals", "propose", "proposals", Counter(p.source for p in proposals))
    for status in STATUSES:
        add(f"· {status}", "propose", status, Counter(p.source for p in proposals if p.status == status))
    if not run.has("filter"):
        return sources, rows, ["the filter stage has not run: the funnel stops at the proposals"]
    results = read_records_so_far(run.path, "filter", FilterResult)
    add("kept by the continuation filter", "filter", "kept", Counter(r.source for r in results if r.kept))
    if not run.has("sft"):
        return sources, rows, ["the sft stage has not run: the funnel stops at the kept interventions"]
    examples = read_records_so_far(run.path, "sft", SFTExample)
    per_source = Counter(source_of.get(e.problem_id, "?") for e in examples)
    add("SFT examples", "sft", "examples", per_source)
    # Rows longer than sft.max_length are dropped before training; which ones is not recorded per row.
    add("SFT rows (≤ sft.max_length)", "sft", "sft_rows", per_source, exact=not run.counts("sft").get("too_long"))
    return sources, rows, notes


# ------------------------------------------------------------------------------ first-error location


@dataclass(frozen=True)
class Located:
    """A proposal's flagged substep, with the sizes of its attempt and its intervention (characters)."""

    source: str
    location: int
    num_substeps: int
    intervention_chars: int
    attempt_chars: int

    @property
    def relative(self) -> float:
        return self.location / self.num_substeps


def locations(run: Run) -> list[Located]:
    """Every proposal with a usable location (statuses ok, leak, not_first)."""
    return [
        Located(p.source, p.location, p.num_substeps, len(p.content or ""), len(p.attempt))
        for p in read_records_so_far(run.path, "propose", Proposal)
        if p.status in LOCATED and p.location is not None and p.num_substeps > 0
    ]


# --------------------------------------------------------------------------------------- RL logs


def rl_logs(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Each RL stage's step log, one record per step (a step logged twice across a resume: the last)."""
    out = {}
    for name in run.stages("rl"):
        by_step = {r["step"]: r for r in read_log(run.path / name / LOG_NAME) if "step" in r}
        if by_step:
            out[name] = [by_step[s] for s in sorted(by_step)]
    return out


# ----------------------------------------------------------------------------------------- pass@k


@dataclass
class PassCurve:
    """pass@k for k = 1..n of one eval stage on one source ('all' = every source), with a 95% percentile
    bootstrap interval over problems at each k."""

    stage: str
    source: str
    problems: int
    ks: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]


def pass_curves(run: Run, resamples: int = 2000, seed: int = 0) -> list[PassCurve]:
    curves = []
    for name in run.stages("eval"):
        if not run.complete(name):
            continue
        groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        for r in read_records_so_far(run.path, name, Rollout):
            groups["all"][r.problem_id].append(r.correct)
            groups[r.source][r.problem_id].append(r.correct)
        # Per source only when there are several (groups holds 'all' and each source).
        sources = (["all"] + sorted(s for s in groups if s != "all")) if len(groups) > 2 else ["all"]
        for source in sources:
            if groups[source]:
                curves.append(_curve(name, source, list(groups[source].values()), resamples, seed))
    return curves


def _curve(stage: str, source: str, verdicts: list[list[bool]], resamples: int, seed: int) -> PassCurve:
    import numpy as np

    n = min(len(v) for v in verdicts)
    ks = list(range(1, n + 1))
    rng = np.random.default_rng(seed)
    # One set of resampled problem indices for every k: the band of a curve is one bootstrap, not n.
    picks = rng.integers(0, len(verdicts), size=(resamples, len(verdicts)))
    lo_at, hi_at = math.floor(0.025 * (resamples - 1)), math.ceil(0.975 * (resamples - 1))
    mean, low, high = [], [], []
    for k in ks:
        values = np.array([pass_at_k(len(v), sum(v), k) for v in verdicts])
        means = np.sort(values[picks].mean(axis=1))
        mean.append(float(values.mean()))
        low.append(float(means[lo_at]))
        high.append(float(means[hi_at]))
    return PassCurve(stage, source, len(verdicts), ks, mean, low, high)


# ---------------------------------------------------------------------------------------- gallery


@dataclass
class GalleryProposal:
    index: int
    status: str
    location: int | None
    content: str | None
    verdict: str  # what the continuation filter made of it, in words
    kept: bool | None  # None: not continued (not ok, or the filter has not run)
    example: str | None  # one correct continuation


@dataclass
class GalleryStep:
    index: int
    text: str
    flagged_by: list[GalleryProposal] = field(default_factory=list)


@dataclass
class GalleryAttempt:
    problem_id: str
    attempt_id: str
    source: str
    problem: str
    answer: str
    outcome: str  # the rollout's grading verdict
    steps: list[GalleryStep]
    proposals: list[GalleryProposal]
    reference: str

    @property
    def kept(self) -> bool:
        return any(p.kept for p in self.proposals)


def gallery(
    run: Run, limit: int, separator: str = DEFAULT_SEPARATOR, seed: int = 0
) -> tuple[list[GalleryAttempt], int]:
    """(a sample of at most `limit` proposed-on attempts, how many there are). The sample mixes attempts
    with a kept intervention, attempts whose interventions were all dropped and the rest, in turn."""
    by_attempt: dict[str, list[Proposal]] = defaultdict(list)
    for p in read_records_so_far(run.path, "propose", Proposal):
        by_attempt[p.attempt_id].append(p)
    verdicts = {(f.attempt_id, f.proposal_index): f for f in read_records_so_far(run.path, "filter", FilterResult)}
    rollouts = {r.attempt_id: r for r in read_records_so_far(run.path, "sample", Rollout)}
    ids = sorted(by_attempt)
    random.Random(seed).shuffle(ids)
    classes: dict[str, list[str]] = defaultdict(list)
    for attempt_id in ids:
        found = [verdicts.get((attempt_id, p.proposal_index)) for p in by_attempt[attempt_id]]
        kind = "kept" if any(f and f.kept for f in found) else "dropped" if any(found) else "other"
        classes[kind].append(attempt_id)
    chosen: list[str] = []
    queues = [classes[k] for k in ("kept", "dropped", "other")]
    while len(chosen) < min(limit, len(ids)):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    attempts = [_attempt(by_attempt[a], verdicts, rollouts.get(a), separator) for a in sorted(chosen)]
    return attempts, len(ids)


def _attempt(
    proposals: list[Proposal],
    verdicts: dict[tuple[str, int], FilterResult],
    rollout: Rollout | None,
    separator: str,
) -> GalleryAttempt:
    first = proposals[0]
    shown = [_proposal(p, verdicts.get((p.attempt_id, p.proposal_index))) for p in proposals]
    shown.sort(key=lambda p: p.index)
    steps = [GalleryStep(s.index, s.text) for s in split_substeps(first.attempt, separator)]
    for p in shown:
        if p.location is not None and 1 <= p.location <= len(steps):
            steps[p.location - 1].flagged_by.append(p)
    outcome = "graded wrong"
    if rollout is not None:
        answer = "no boxed answer" if rollout.extracted is None else f"answered {rollout.extracted}"
        outcome = f"{rollout.reason}, {answer}, {rollout.completion_tokens} tokens"
        outcome += " (cut at max_tokens)" if rollout.finish_reason == "length" else ""
    return GalleryAttempt(
        problem_id=first.problem_id,
        attempt_id=first.attempt_id,
        source=first.source,
        problem=first.problem,
        answer=first.answer,
        outcome=outcome,
        steps=steps,
        proposals=shown,
        reference=first.reference_solution,
    )


def _proposal(p: Proposal, result: FilterResult | None) -> GalleryProposal:
    if result is not None and result.continuations:
        kept = "kept" if result.kept else "dropped"
        verdict = f"{result.continuations_correct}/{result.continuations} continuations correct: {kept}"
        example = result.example_continuation
        return GalleryProposal(p.proposal_index, p.status, p.location, p.content, verdict, result.kept, example)
    if result is not None:  # the filter was disabled: kept without continuations
        return GalleryProposal(p.proposal_index, p.status, p.location, p.content, "kept (filter off)", True, None)
    verdict = "not continued (filter has not run)" if p.status == "ok" else f"not continued ({p.status})"
    return GalleryProposal(p.proposal_index, p.status, p.location, p.content, verdict, None, None)

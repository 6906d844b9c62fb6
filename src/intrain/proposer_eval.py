"""`intrain eval-proposer CONFIG --labels champ|FILE.jsonl`: can this proposer find first errors?

Before spending GPU-hours on InT, a user can score the configured proposer (`propose.proposer`: the
policy itself, another local model, an OpenAI-compatible endpoint) on solutions whose first wrong
step people have labelled. The proposer sees each solution exactly as in the `propose` stage (same
template, substeps split on `propose.separator`, same parser); its location is compared with the
labelled substep.

Label sources:
- `champ`: the CHAMP package's first-wrong-step annotations of model solutions (`pip install
  champ-dataset`), the annotated character span mapped to the substep that contains its start;
  the problem's reference solution is shown as in InT.
- a ProcessBench-format JSONL file: one object per line with `id`, `problem`, `steps` (a list of
  strings) and `label` (0-based index of the first wrong step, -1 for none); optional `answer` and
  `reference_solution` (ProcessBench has neither, so the proposer works without a reference).

Scores (Wilson 95% intervals): parse rate, exact-step accuracy and accuracy within one step, each
over the solutions with a labelled error; for solutions labelled error-free, how often the proposer
flagged a step anyway (our proposer formats always name a step, so this is its false-alarm rate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intrain import fingerprints
from intrain.data import DataError
from intrain.data.files import read_utf8_text
from intrain.progress import console
from intrain.records import Proposal, Rollout
from intrain.stages.common import RunContext, chunks, run_shards
from intrain.stages.propose import propose_work, proposer_ray
from intrain.stats import wilson_interval
from intrain.steps import split_substeps

PARSED = ("ok", "leak", "not_first")


@dataclass(frozen=True)
class Labelled:
    attempt: Rollout
    first_error: int | None  # 1-based substep, None = labelled error-free


def run(ctx: RunContext, labels: str, limit: int | None = None) -> dict[str, Any]:
    items = labelled_solutions(labels, ctx.config.propose.separator)[:limit]
    if not items:
        raise DataError(f"--labels {labels}: no labelled solutions")
    cfg = ctx.config
    stage = ctx.open_stage("eval-proposer", fingerprints.EVAL_PROPOSER, labels=labels, limit=limit)
    if not stage.complete:
        attempts = [item.attempt for item in items]
        shards = chunks(attempts, cfg.propose.shard_size)
        run_shards(ctx, stage, shards, propose_work, Proposal, "eval-proposer", cfg.propose.n, ray=proposer_ray(cfg))
    scores = score(items, stage.records(Proposal))
    scores.update(labels=labels, proposer=cfg.propose.proposer.kind, template=cfg.propose.template, n=cfg.propose.n)
    stage.write_json("scores.json", scores)
    stage.write_text("scores.md", markdown(scores))
    if not stage.complete:
        stage.finish({k: scores[k] for k in ("solutions", "with_error", "error_free", "proposals")})
    console.print(markdown(scores))
    return scores


def labelled_solutions(labels: str, separator: str) -> list[Labelled]:
    if labels == "champ":
        return _champ(separator)
    path = Path(labels)
    if not path.is_file():
        raise DataError(f"--labels {labels}: neither 'champ' nor an existing ProcessBench-format JSONL file")
    return _processbench(path)


def _champ(separator: str) -> list[Labelled]:
    from intrain.data.champ import load_champ, load_champ_annotations

    problems = {p.id: p for p in load_champ()}
    out: list[Labelled] = []
    per_problem: dict[str, int] = {}
    for ann in load_champ_annotations():
        problem = problems.get(ann.problem_id)
        if problem is None:
            continue
        index = per_problem[ann.problem_id] = per_problem.get(ann.problem_id, -1) + 1
        error = None if ann.start is None else _substep_at(ann.text, ann.start, separator)
        attempt = _attempt(
            problem.id, index, problem.problem, problem.answer, problem.reference_solution or "", ann.text, "champ"
        )
        out.append(Labelled(attempt, error))
    return out


def _substep_at(text: str, offset: int, separator: str) -> int | None:
    """The substep holding character `offset` (one in a separator belongs to the substep after it)."""
    steps = split_substeps(text, separator)
    return next((s.index for s in steps if offset < s.end), steps[-1].index if steps else None)


def _processbench(path: Path) -> list[Labelled]:
    out: list[Labelled] = []
    for line_no, line in enumerate(read_utf8_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg})") from None
        steps, label = row.get("steps"), row.get("label")
        if not isinstance(steps, list) or not steps or not all(isinstance(x, str) and x.strip() for x in steps):
            raise DataError(f"{where}: 'steps' must be a non-empty list of non-empty strings")
        if not isinstance(label, int) or not -1 <= label < len(steps):
            raise DataError(f"{where}: 'label' must be -1 or a step index below {len(steps)}, got {label!r}")
        if not isinstance(row.get("problem"), str) or not row["problem"].strip():
            raise DataError(f"{where}: 'problem' must be a non-empty string")
        problem_id = str(row.get("id", f"line{line_no}"))
        # Steps are joined with the default separator, so substep k is step k (steps hold no blank lines).
        text = "\n\n".join(x.strip() for x in steps)
        attempt = _attempt(
            problem_id,
            0,
            row["problem"],
            str(row.get("answer", "")),
            str(row.get("reference_solution", "")),
            text,
            "processbench",
        )
        out.append(Labelled(attempt, None if label == -1 else label + 1))
    return out


def _attempt(problem_id: str, index: int, problem: str, answer: str, reference: str, text: str, source: str) -> Rollout:
    return Rollout(
        problem_id=problem_id,
        source=source,
        problem=problem,
        answer=answer,
        reference_solution=reference,
        sample_index=index,
        completion=text,
        completion_tokens=0,
        prompt_tokens=0,
        finish_reason="stop",
        correct=False,
        reason="labelled",
        extracted=None,
    )


def score(items: list[Labelled], proposals: list[Proposal]) -> dict[str, Any]:
    """Per proposal (each of the n proposals of a solution counts once)."""
    truth = {item.attempt.attempt_id: item.first_error for item in items}
    with_error = [p for p in proposals if truth.get(p.attempt_id) is not None]
    error_free = [p for p in proposals if p.attempt_id in truth and truth[p.attempt_id] is None]

    def rate(hits: int, n: int) -> dict[str, Any]:
        low, high = wilson_interval(hits, n) if n else (0.0, 1.0)
        return {"hits": hits, "n": n, "rate": hits / n if n else None, "ci95": [round(low, 4), round(high, 4)]}

    parsed = [p for p in with_error if p.status in PARSED and p.location is not None]
    return {
        "solutions": len(items),
        "with_error": sum(i.first_error is not None for i in items),
        "error_free": sum(i.first_error is None for i in items),
        "proposals": len(proposals),
        "parse_rate": rate(len(parsed), len(with_error)),
        "exact_step": rate(sum(p.location == truth[p.attempt_id] for p in parsed), len(with_error)),
        "within_one_step": rate(
            sum(abs((p.location or 0) - (truth[p.attempt_id] or 0)) <= 1 for p in parsed), len(with_error)
        ),
        "flagged_error_free": rate(
            sum(p.status in PARSED and p.location is not None for p in error_free), len(error_free)
        ),
    }


def markdown(scores: dict[str, Any]) -> str:
    rows = [
        ("parse rate", scores["parse_rate"]),
        ("exact first-error step", scores["exact_step"]),
        ("within one step", scores["within_one_step"]),
        ("flagged a step in an error-free solution", scores["flagged_error_free"]),
    ]
    lines = [
        f"{scores['solutions']} labelled solutions ({scores['with_error']} with an error, "
        f"{scores['error_free']} error-free), {scores['proposals']} proposals\n",
        "| measure | rate | 95% CI | of |",
        "|---|---|---|---|",
    ]
    for name, r in rows:
        value = "-" if r["rate"] is None else f"{r['rate']:.3f}"
        lines.append(f"| {name} | {value} | [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {r['hits']}/{r['n']} |")
    return "\n".join(lines) + "\n"

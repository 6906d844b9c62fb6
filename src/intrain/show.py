"""`intrain show RUN_DIR --problem ID`: what InT did with one problem, in the terminal.

For each sampled attempt: its verdict, its numbered substeps (blank-line chunks, as the proposer saw
them) with the substep each proposal flags marked, the proposals (status, intervention) and what the
continuation filter made of each (correct continuations out of those sampled, kept or not); then the
reference solution. It reads whatever records the run has written, so it also works on a run in
progress; stages that have not run are simply absent.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from intrain.config import ConfigError
from intrain.records import FilterResult, Proposal, Rollout
from intrain.steps import DEFAULT_SEPARATOR, split_substeps
from intrain.store import read_records_so_far


def show(run_dir: Path, problem_id: str, console: Console, separator: str = DEFAULT_SEPARATOR) -> None:
    if not (run_dir / "sample").is_dir():
        raise ConfigError(f"{run_dir}: no sample stage here (is it a run directory?)")
    rollouts = read_records_so_far(run_dir, "sample", Rollout)
    attempts = sorted((r for r in rollouts if r.problem_id == problem_id), key=lambda r: r.sample_index)
    if not attempts:
        known = sorted({r.problem_id for r in rollouts})
        raise ConfigError(
            f"--problem {problem_id}: not among the {len(known)} problems of {run_dir / 'sample'} "
            f"(e.g. {', '.join(known[:3])})"
        )
    proposals: dict[str, list[Proposal]] = defaultdict(list)
    for p in read_records_so_far(run_dir, "propose", Proposal):
        if p.problem_id == problem_id:
            proposals[p.attempt_id].append(p)
    verdicts = {(f.attempt_id, f.proposal_index): f for f in read_records_so_far(run_dir, "filter", FilterResult)}

    first = attempts[0]
    console.print(Panel(Text(first.problem), title=f"{problem_id} · gold answer {first.answer}", title_align="left"))
    for attempt in attempts:
        attempt_id = f"{attempt.problem_id}#{attempt.sample_index}"
        mine = sorted(proposals.get(attempt_id, []), key=lambda p: p.proposal_index)
        flagged = {p.location for p in mine if p.location is not None}
        verdict = "[green]correct[/]" if attempt.correct else f"[red]{attempt.reason}[/]"
        console.rule(f"{attempt_id}: {verdict} (answer {attempt.extracted}, {attempt.completion_tokens} tokens)")
        for step in split_substeps(attempt.completion, separator):
            marker = "[bold red]>>[/]" if step.index in flagged else "  "
            console.print(f"{marker} [dim]{step.index:>2}[/] ", Text(step.text), sep="")
        for p in mine:
            console.print(_proposal_line(p, verdicts.get((attempt_id, p.proposal_index))))
    reference = first.reference_solution or "(the source has no reference solution)"
    console.print(Panel(Text(reference), title="reference solution", title_align="left", style="dim"))


def _proposal_line(p: Proposal, result: FilterResult | None) -> Text:
    line = Text(f"   proposal {p.proposal_index}: ", style="bold")
    line.append(p.status, style="green" if p.status == "ok" else "yellow")
    if p.location is not None:
        line.append(f" · replaces substep {p.location}")
    if p.content:
        line.append("\n     ").append(p.content, style="cyan")
    if result is not None and result.continuations:
        kept = "kept" if result.kept else "dropped"
        tally = f"{result.continuations_correct}/{result.continuations}"
        line.append(f"\n     filter: {tally} continuations correct, {kept}")
    return line

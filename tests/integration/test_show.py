"""`intrain show RUN --problem ID`: one problem's trace view, read from a run's records."""

from __future__ import annotations

import random

from intrain.cli import main
from intrain.data.arithmetic import generate_arithmetic
from intrain.records import FilterResult, Proposal, Rollout
from intrain.steps import split_substeps
from intrain.store import Stage
from intrain.truth.oracle import make_faulty_attempt


def write_run(run_dir):
    problem = generate_arithmetic(1, seed=3)[0]
    attempt, location, _ = make_faulty_attempt(problem, random.Random(0))
    common = dict(problem_id=problem.id, source="arithmetic", problem=problem.problem, answer=problem.answer)
    rollouts = [
        Rollout(
            **common,
            reference_solution=problem.reference_solution,
            sample_index=i,
            completion=text,
            completion_tokens=30,
            prompt_tokens=20,
            finish_reason="stop",
            correct=i == 1,
            reason="correct" if i == 1 else "wrong",
            extracted=problem.answer if i == 1 else "7",
        )
        for i, text in enumerate([attempt, problem.reference_solution])
    ]
    sample = Stage(run_dir, "sample", "h")
    sample.write_records(0, rollouts, Rollout)
    sample.finish({})
    proposal = Proposal(
        **common,
        attempt_id=f"{problem.id}#0",
        proposal_index=0,
        reference_solution=problem.reference_solution,
        attempt=attempt,
        num_substeps=len(split_substeps(attempt)),
        shown_substeps=len(split_substeps(attempt)),
        truncated=False,
        solve_output=None,
        proposer_output="...",
        proposer_finish_reason="stop",
        status="ok",
        content="Recompute this step carefully: INTERVENTION-TEXT",
        location=location,
        guided_prefix="x",
        original_step_prefix="y",
    )
    propose = Stage(run_dir, "propose", "h")
    propose.write_records(0, [proposal], Proposal)
    propose.finish({})
    result = FilterResult(**proposal.__dict__, continuations=8, continuations_correct=3, kept=True)
    filtered = Stage(run_dir, "filter", "h")
    filtered.write_records(0, [result], FilterResult)
    filtered.finish({})
    return problem, attempt, location


def test_show_marks_the_flagged_substep_and_the_filter_verdict(tmp_path, capsys):
    problem, _attempt, location = write_run(tmp_path)
    assert main(["show", str(tmp_path), "--problem", problem.id]) == 0
    out = capsys.readouterr().out
    assert problem.problem[:30] in out and f"gold answer {problem.answer}" in out
    flagged = [line for line in out.splitlines() if line.startswith(">>")]
    assert len(flagged) == 1 and flagged[0].split()[1] == str(location)
    assert "INTERVENTION-TEXT" in out and f"replaces substep {location}" in out
    assert "3/8 continuations correct, kept" in out
    assert f"{problem.id}#1: correct" in out and f"{problem.id}#0: wrong" in out


def test_show_without_later_stages_shows_the_attempts(tmp_path, capsys):
    problem, _, _ = write_run(tmp_path)
    for stage in ("propose", "filter"):
        for f in (tmp_path / stage).iterdir():
            f.unlink()
        (tmp_path / stage).rmdir()
    assert main(["show", str(tmp_path), "--problem", problem.id]) == 0
    out = capsys.readouterr().out
    assert "proposal" not in out and not any(line.startswith(">>") for line in out.splitlines())


def test_show_unknown_problem_or_folder_is_one_line(tmp_path, capsys):
    write_run(tmp_path)
    assert main(["show", str(tmp_path), "--problem", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--problem nope: not among the 1 problems" in err[0]
    assert main(["show", str(tmp_path / "missing"), "--problem", "x"]) == 2
    assert "no sample stage here" in capsys.readouterr().err


def test_show_reads_a_run_in_progress(tmp_path, capsys):
    problem, _attempt, location = write_run(tmp_path)
    for stage in ("propose", "filter"):  # written shards, but the stages have not finished
        manifest = tmp_path / stage / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"complete"', '"running"'))
    assert main(["show", str(tmp_path), "--problem", problem.id]) == 0
    out = capsys.readouterr().out
    assert f"replaces substep {location}" in out and "3/8 continuations correct, kept" in out

"""`intrain lab hard-split`: problems the policy fails on all of K samples, written as a file source."""

from __future__ import annotations

import json

from tiny_configs import write_config

from intrain.cli import main
from intrain.config import SourceConfig, load_config
from intrain.data import load_problems
from intrain.engines.base import Completion
from intrain.lab import hard_split
from intrain.stages.common import RunContext


class SolvesSome:
    """Answers correctly on the `k`-th sample of every problem listed in `solve_at`, wrongly otherwise."""

    def __init__(self, answers: dict[str, str], solve_at: dict[str, int]):
        self.answers, self.solve_at, self.seen = answers, solve_at, {}

    def generate(self, requests, sampling, on_progress=None):
        out = []
        for r in requests:
            problem = next(p for p in self.answers if p in r.messages[0]["content"])
            start = self.seen.get(problem, 0)
            self.seen[problem] = start + r.n
            texts = [
                f"\\boxed{{{self.answers[problem] if self.solve_at.get(problem) == start + i else 'x'}}}"
                for i in range(r.n)
            ]
            out.append([Completion(t, [1], "stop", None, 1) for t in texts])
        return out


def test_hard_problems_are_those_with_no_correct_sample(tmp_path, tiny_model_dir):
    config = load_config(
        write_config(tmp_path, tiny_model_dir, lab={"hard_k": 4}, sample={"shard_size": 2}),
        ["data.train.size=5", "data.eval.size=3"],
    )
    ctx = RunContext(config, tmp_path / "run")
    train = ctx.problems("train")
    evals = ctx.problems("eval")
    answers = {p.problem: p.answer for p in train + evals}
    # train: problem 0 solved on its last sample, problem 2 on its first; eval: problem 1 solved.
    solve_at = {train[0].problem: 3, train[2].problem: 0, evals[1].problem: 1}
    scripted = SolvesSome(answers, solve_at)
    ctx._generators[(config.model.path, config.model.adapter, config.model.engine)] = scripted
    try:
        summary = hard_split.run(ctx)
    finally:
        ctx.close()
    assert summary["train"] == {"problems": 5, "k": 4, "hard": 3, "solved": 2}
    assert summary["eval"] == {"problems": 3, "k": 4, "hard": 2, "solved": 1, "dropped_in_train": 0}
    assert all(n == 4 for n in scripted.seen.values())  # K samples per problem, whatever sample.n says

    path = tmp_path / "run" / "lab-hard-train" / hard_split.HARD_FILE
    hard, _ = load_problems(SourceConfig(kind="file", path=str(path)))
    assert [p.id for p in hard] == [train[1].id, train[3].id, train[4].id]
    assert hard[0].reference_solution == train[1].reference_solution and hard[0].source == "arithmetic"
    eval_rows = [json.loads(line) for line in (tmp_path / "run" / "lab-hard-eval" / "hard.jsonl").open()]
    assert [r["id"] for r in eval_rows] == [evals[0].id, evals[2].id]


def test_a_held_out_problem_that_is_also_a_training_problem_is_left_out(tmp_path, tiny_model_dir):
    # Same generator and seed: the eval set's first 2 problems are the training set's 2.
    config = load_config(
        write_config(tmp_path, tiny_model_dir, lab={"hard_k": 2}, sample={"max_tokens": 4}),
        ["data.train.size=2", "data.eval.size=4", "data.eval.seed=11"],
    )
    ctx = RunContext(config, tmp_path / "run")
    train_texts = {p.problem for p in ctx.problems("train")}
    unseen = [p for p in ctx.problems("eval") if p.problem not in train_texts]
    try:
        summary = hard_split.run(ctx)
    finally:
        ctx.close()
    assert len(unseen) == 2
    assert summary["eval"] == {"problems": 2, "k": 2, "hard": 2, "solved": 0, "dropped_in_train": 2}
    eval_rows = [json.loads(line) for line in (tmp_path / "run" / "lab-hard-eval" / "hard.jsonl").open()]
    assert not {r["problem"] for r in eval_rows} & train_texts


def test_cli_runs_it_and_a_rerun_reuses_it(tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir, lab={"hard_k": 2}, sample={"max_tokens": 4})
    assert main(["lab", "hard-split", config]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err  # the console reports on stderr
    assert "hard-split train: 4 of 4 problems with 0/2 correct" in out  # a random model solves nothing
    manifest = tmp_path / "run" / "lab-hard-train" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert main(["lab", "hard-split", config]) == 0
    assert manifest.stat().st_mtime_ns == before

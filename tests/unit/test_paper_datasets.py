"""The packaged paper config reads the released datasets' columns, and eval reports each benchmark.

The fixtures are written in the released datasets' column names (tests/fixtures/data):
  int_hard_set.{csv,json,...}  CMU-AIRe/InT-hard-set: problem, answer, solution, reference_solution,
                               reference_solution_source, source
  int_rl.jsonl                 CMU-AIRe/InT-RL: source, problem, answer (what the authors' loader reads)
  int_test_set.jsonl           CMU-AIRe/InT-test-set: problem, answer, source (one value per benchmark)
Each is loaded through the paper config's own source (hf kind, its split and column mapping), with
only the dataset name pointed at the local file.
"""

from collections import Counter
from pathlib import Path

import pytest

from intrain.config import SourceConfig, load_config
from intrain.data import DataError, load_problems
from intrain.records import Rollout
from intrain.stages.evaluate import markdown_table, summarize

FIX = Path(__file__).parents[1] / "fixtures" / "data"
PAPER = load_config("paper-qwen3-4b-instruct")
BENCHMARKS = ["IMO-AnswerBench", "HMMT-November-2025", "AMO-Bench", "Apex-Shortlist"]


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def local(source: SourceConfig, path: Path) -> SourceConfig:
    """The paper's source with its dataset name replaced by a local file."""
    assert source.kind == "hf"
    return source.model_copy(update={"name": str(path)})


def test_hard_set_columns():
    problems, skipped = load_problems(local(PAPER.data.train, FIX / "int_hard_set.csv"), PAPER.data.on_invalid)
    assert not skipped and len(problems) == 12
    assert Counter(p.source for p in problems) == {
        "omni-math": 3,
        "polaris": 3,
        "acereason-math": 2,
        "imo-answerbench": 2,
        "aime": 2,
    }
    # The proposer and hint_rl need references: reference_solution, else solution (row 3), else none (row 11).
    assert [bool(p.reference_solution) for p in problems] == [True] * 11 + [False]
    assert problems[3].reference_solution.startswith(r"Use $\sum k^2")
    assert problems[2].answer == "45" and problems[4].answer == r"\frac{21}{64}"


def test_int_rl_set_columns():
    assert PAPER.rl.data.name == "CMU-AIRe/InT-RL" and PAPER.rl.data.split == "train"
    problems, _ = load_problems(local(PAPER.rl.data, FIX / "int_rl.jsonl"), PAPER.data.on_invalid)
    assert [p.source for p in problems] == ["omni-math", "polaris", "acereason-math", "imo-answerbench"]
    assert [p.answer for p in problems] == ["15", "1", "385", "341"]
    assert all(p.problem and not p.reference_solution for p in problems)


def test_test_set_reports_each_benchmark_separately():
    assert PAPER.data.eval.name == "CMU-AIRe/InT-test-set" and PAPER.data.eval.split == "test"
    problems, _ = load_problems(local(PAPER.data.eval, FIX / "int_test_set.jsonl"), PAPER.data.on_invalid)
    assert [p.source for p in problems] == [b for b in BENCHMARKS for _ in range(2)]
    assert len({p.id for p in problems}) == 8

    # Fake eval rollouts (2 samples per problem, the first problem of each benchmark solved once).
    rollouts = [
        Rollout(
            problem_id=p.id,
            source=p.source,
            problem=p.problem,
            answer=p.answer,
            reference_solution=p.reference_solution,
            sample_index=i,
            completion="",
            completion_tokens=10,
            prompt_tokens=5,
            finish_reason="stop",
            correct=(j % 2 == 0 and i == 0),
            reason="wrong",
            extracted=None,
        )
        for j, p in enumerate(problems)
        for i in range(2)
    ]
    summary = summarize(rollouts, [1, 2])
    assert sorted(summary["by_source"]) == sorted(BENCHMARKS)
    for benchmark in BENCHMARKS:
        block = summary["by_source"][benchmark]
        assert block["problems"] == 2 and block["samples"] == 4
        assert block["pass@1"] == pytest.approx(0.25) and block["pass@2"] == pytest.approx(0.5)
    table = markdown_table({"base": summary}, [1, 2])
    assert all(f"| base | {b} | 2 |" in table for b in BENCHMARKS)


def test_test_set_without_its_benchmark_column_fails_loudly(tmp_path):
    # The explicit mapping: a test set lacking the source column is an error, not one lumped block.
    path = tmp_path / "no_source.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n')
    with pytest.raises(DataError, match="'source'"):
        load_problems(local(PAPER.data.eval, path), PAPER.data.on_invalid)

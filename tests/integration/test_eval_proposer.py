"""`intrain eval-proposer`: the configured proposer scored against human first-error labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_configs import write_config

from intrain.cli import main
from intrain.config import load_config
from intrain.engines.base import Completion
from intrain.proposer_eval import labelled_solutions, run
from intrain.stages.common import RunContext

CHAMP = Path(__file__).parents[1] / "fixtures" / "data" / "champ"


class PointsAt:
    """A proposer that names substep `where[problem]` of each attempt."""

    def __init__(self, where: dict[str, int | None]):
        self.where = where

    def generate(self, requests, sampling, on_progress=None):
        out = []
        for r in requests:
            prompt = "\n".join(m["content"] for m in r.messages)
            problem = next(p for p in self.where if p in prompt)
            location = self.where[problem]
            text = (
                "no idea"
                if location is None
                else f'<intervention>{{"location": {location}, "content": "Check this step again."}}</intervention>'
            )
            out.append([Completion(text, [1], "stop", None, 1) for _ in range(r.n)])
        return out


def processbench(tmp_path) -> Path:
    rows = [
        {"id": "a", "problem": "Problem A: 2+2?", "steps": ["2+2", "=5", "so 5"], "label": 1},
        {"id": "b", "problem": "Problem B: 3*3?", "steps": ["3*3", "=9"], "label": -1},
        {"id": "c", "problem": "Problem C: 1+1?", "steps": ["1", "+1", "=3", "so 3"], "label": 2},
        {"id": "d", "problem": "Problem D: 5-1?", "steps": ["5-1=6", "so 6"], "label": 0},
    ]
    path = tmp_path / "pb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_labels_map_to_substeps(tmp_path, monkeypatch):
    items = labelled_solutions(str(processbench(tmp_path)), "\n\n")
    assert [i.first_error for i in items] == [2, None, 3, 1]
    assert items[0].attempt.completion == "2+2\n\n=5\n\nso 5"
    monkeypatch.syspath_prepend(str(CHAMP))
    champ = labelled_solutions("champ", "\n\n")
    # The annotated span "Then f(n) = 3 f(n-1), ..." is the second blank-line substep; the other
    # annotator found no mistake.
    assert [(i.attempt.attempt_id, i.first_error) for i in champ] == [
        ("P_Combinatorics_1#0", 2),
        ("P_Combinatorics_1#1", None),
    ]
    assert champ[0].attempt.reference_solution  # CHAMP's own solution is shown as the reference


def test_scores_against_the_labels(tmp_path, tiny_model_dir):
    config = load_config(write_config(tmp_path, tiny_model_dir, propose={"n": 1, "template": "compact"}))
    ctx = RunContext(config, tmp_path / "run")
    # a: right (2); b: error-free but flagged; c: off by one (2 vs 3); d: no parseable answer.
    ctx._generators[(config.model.path, config.model.adapter, config.model.engine)] = PointsAt(
        {"Problem A": 2, "Problem B": 1, "Problem C": 2, "Problem D": None}
    )
    try:
        scores = run(ctx, str(processbench(tmp_path)))
    finally:
        ctx.close()
    assert (scores["solutions"], scores["with_error"], scores["error_free"]) == (4, 3, 1)
    assert (scores["parse_rate"]["hits"], scores["parse_rate"]["n"]) == (2, 3)
    assert scores["exact_step"]["hits"] == 1 and scores["within_one_step"]["hits"] == 2
    assert (scores["flagged_error_free"]["hits"], scores["flagged_error_free"]["n"]) == (1, 1)
    low, high = scores["exact_step"]["ci95"]
    assert low < 1 / 3 < high
    stage = tmp_path / "run" / "eval-proposer"
    assert json.loads((stage / "scores.json").read_text())["exact_step"]["hits"] == 1
    assert "| exact first-error step | 0.333 |" in (stage / "scores.md").read_text()


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "x", "problem": "p", "steps": [], "label": -1}', "'steps' must be a non-empty list"),
        ('{"id": "x", "problem": "p", "steps": ["a"], "label": 3}', "'label' must be -1 or a step index below 1"),
        ('{"id": "x", "steps": ["a"], "label": 0}', "'problem' must be a non-empty string"),
        ("not json", "not JSON"),
    ],
)
def test_bad_label_files_are_one_line(tmp_path, tiny_model_dir, capsys, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line + "\n")
    config = write_config(tmp_path, tiny_model_dir)
    assert main(["eval-proposer", config, "--labels", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: line 1: {message}" in err[0]

"""`scripts/restyle_references.py`: the family's references, reworded with every computation kept."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from intrain.data.arithmetic import generate_arithmetic
from intrain.truth.expressions import find_equations

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "restyle_references.py"


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_every_computation_is_kept_in_order_and_only_the_wording_changes(tmp_path):
    problems = generate_arithmetic(40, seed=3, steps=(2, 3), max_operand=10, max_result=50)
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(source, [asdict(p) for p in problems])
    done = subprocess.run([sys.executable, str(SCRIPT), str(source), str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in problems]
    for problem, row in zip(problems, rows, strict=True):
        old, new = problem.reference_solution, row["reference_solution"]
        equations = [(e.lhs, e.rhs) for e in find_equations(old)]
        assert [(e.lhs, e.rhs) for e in find_equations(new)] == equations
        paragraphs = new.split("\n\n")
        assert paragraphs[:-1] == [f"Step {i}: {lhs} = {rhs}." for i, (lhs, rhs) in enumerate(equations, 1)]
        assert paragraphs[-1] == f"Therefore the result is \\boxed{{{problem.answer}}}."
        assert not set(paragraphs) & set(old.split("\n\n"))  # no paragraph kept in the family's wording
        assert {k: v for k, v in row.items() if k != "reference_solution"} == {
            k: v for k, v in asdict(problem).items() if k != "reference_solution"
        }


def test_a_reference_without_equations_names_its_line_and_writes_nothing(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = asdict(generate_arithmetic(1, seed=3, steps=(2, 2), max_operand=10, max_result=50)[0])
    _write(source, [good, good | {"id": "words", "reference_solution": "It is four."}])
    done = subprocess.run([sys.executable, str(SCRIPT), str(source), str(target)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == f"{source}:2: no equation in the reference solution"
    assert not target.exists()

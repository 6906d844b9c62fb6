"""`intrain warmup` wiring on the tiny model: data from the checker, LoRA training, adapter saved, skill measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_configs import write_config

from intrain.cli import main
from intrain.data.arithmetic import generate_arithmetic
from intrain.interventions import leaks_answer, parse_intervention, quote_substeps
from intrain.steps import split_substeps
from intrain.truth.arithmetic import first_wrong_substep
from intrain.warmup import (
    corrected_step,
    error_quote,
    first_equation_substep,
    synthetic_examples,
    target_text,
    with_plan,
)

WARMUP_SKILL = Path(__file__).resolve().parents[2] / "scripts" / "warmup_skill.py"


def test_synthetic_targets_parse_back_to_the_true_location():
    for ex in synthetic_examples(generate_arithmetic(40, 5), seed=5):
        steps = ex.attempt.split("\n\n")
        assert first_wrong_substep(steps) == ex.location
        parsed = parse_intervention(target_text(ex), len(steps))
        assert (parsed.status, parsed.location, parsed.content) == ("ok", ex.location, ex.intervention)
        assert not leaks_answer(ex.intervention, ex.problem.answer)
        # The quote alone points at the slip: the parser resolves it to the true substep and nothing else.
        assert ex.quote is not None and quote_substeps(ex.quote, steps) == [ex.location]
        quoted = parse_intervention(
            target_text(ex).replace(f'"location": {ex.location}', '"location": 1'), len(steps), steps
        )
        assert (quoted.status, quoted.location, quoted.location_from) == ("ok", ex.location, "quote")


def test_error_quote_prefers_the_false_equation_and_needs_a_text_no_other_substep_holds():
    steps = ["Tom has 3 + 4 = 7 apples.", "Then 7 * 2 = 15 and 15 - 1 = 14.", "So \\boxed{14}."]
    assert error_quote(steps, 2) == "7 * 2 = 15"
    # A true equation on the wrong operands: the equation itself.
    assert error_quote(["First 3 + 4 = 7.", "Then 7 + 2 = 9.", "\\boxed{9}"], 2) == "7 + 2 = 9"
    # A wrong box after consistent work: the box.
    assert error_quote(["First 3 + 4 = 7.", "So the answer is \\boxed{8}."], 2) == "\\boxed{8}"
    # Nothing in it that no other substep holds: no quote (the target states the location alone).
    assert error_quote(["Then 2 + 2 = 4.", "Then 2 + 2 = 4."], 2) is None


def test_policy_examples_keep_wrong_operand_slips_with_the_reference_step():
    from intrain.engines.base import Completion, SamplingParams
    from intrain.grading import Grader
    from intrain.warmup import policy_examples

    problem = generate_arithmetic(1, seed=3, steps=(2, 2), max_operand=10, max_result=50)[0]
    assert "5 * 9 = 45" in problem.reference_solution and problem.answer == "38"
    attempts = [
        "Ravi has 5 * 9 = 44 stickers.\n\nThen 44 - 7 = 37.\n\nSo \\boxed{37}.",  # false equation, step 1
        "Ravi has 5 * 9 = 45 stickers.\n\nThen 45 - 6 = 39.\n\nSo \\boxed{39}.",  # true equation, wrong operand, step 2
        "Ravi has 5 * 9 = 45 stickers.\n\nThen 45 - 7 = 38.\n\nSo \\boxed{38}.",  # correct: skipped
    ]

    class Replay:
        def generate(self, requests, sampling, on_progress=None):
            return [
                [
                    Completion(text=a, token_ids=[1], finish_reason="stop", logprobs=None, prompt_tokens=1)
                    for a in attempts
                ]
                for _ in requests
            ]

    with Grader(workers=1, timeout_s=10) as grader:
        examples = policy_examples(Replay(), grader, [problem], "{problem}", 3, SamplingParams(), "\n\n")
    assert [(ex.location, ex.origin) for ex in examples] == [(1, "policy"), (2, "policy")]
    assert examples[0].intervention.startswith("Wait, let me recompute 5 * 9 carefully: 5 * 9 = 45.")
    assert "45 - 7" in examples[1].intervention and not leaks_answer(examples[1].intervention, "38")


def test_corrected_step_redoes_the_false_equation_without_leaking():
    assert (
        corrected_step("Then 12 + 7 = 18 apples.", answer="25")
        == "Wait, let me recompute 12 + 7 carefully: 12 + 7 = 19."
    )
    step = corrected_step("So 19 - 5 = 13.", answer="14")
    assert step is not None and "14" not in step and "19 - 5" in step
    assert corrected_step("All good: 2 + 2 = 4.", answer="4") is None


def test_plan_sketches_the_remaining_operations_without_the_answer():
    reference = "First, 2 * 8 = 16.\n\nThen, 16 * 2 = 32.\n\nThen, 32 - 5 = 27.\n\nThe final answer is \\boxed{27}."
    step = "Wait, let me recompute 2 * 8 carefully: 2 * 8 = 16."
    assert with_plan(step, reference, "27") == step + " Next I need 16 * 2, then 32 - 5."
    last = "Wait, let me recompute 32 - 5 carefully, one operation at a time."
    assert with_plan(last, reference, "27") == last  # nothing left to sketch
    assert with_plan("Wait, 3 + 4 = 7.", reference, "27") == "Wait, 3 + 4 = 7."  # no anchor in the reference
    for ex in synthetic_examples(generate_arithmetic(60, 9), seed=9):
        assert not leaks_answer(ex.intervention, ex.problem.answer)


def test_warmup_command_on_tiny_model(tmp_path, tiny_model_dir):
    path = write_config(
        tmp_path,
        tiny_model_dir,
        data={
            "train": {"kind": "arithmetic", "size": 2, "seed": 1},
            "eval": {"kind": "arithmetic", "size": 2, "seed": 2},
            "prompt_template": "{problem}\nPut your final answer within \\boxed{}.",
        },
        sample={"n": 1, "max_tokens": 8},
        propose={"template": "compact", "max_prompt_tokens": 1024},
        eval={"n": 2, "ks": [1], "max_tokens": 8},
        warmup={
            "synthetic_examples": 10,
            "synthetic_slip_weights": [1, 50],
            "solution_examples": 3,
            "policy_problems": 2,
            "policy_samples": 1,
            "heldout_fraction": 0.3,
            "proposal_max_tokens": 8,
            "output": "adapter",
            "train": {
                "learning_rate": 1e-3,
                "epochs": 1,
                "effective_batch_size": 4,
                "per_device_batch_size": 2,
                "max_length": 2048,
                "lora": {"r": 4, "alpha": 8},
                "save_steps": 1,
            },
        },
    )
    assert main(["warmup", str(path)]) == 0
    report = json.loads((tmp_path / "run" / "warmup" / "report.json").read_text())
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    card = (tmp_path / "adapter" / "README.md").read_text()  # a model card from the report, not PEFT's template
    assert "More Information Needed" not in card and f"{report['train_rows']} rows" in card
    assert f"{report['proposer_after']['parse_rate']:.2f} / " in card and "intrain warmup" in card
    assert report["train_rows"] > 0 and report["heldout"] > 0 and report["solution_examples"] == 3
    examples = json.loads((tmp_path / "run" / "warmup" / "examples.json").read_text())
    seen = {e["problem"]["problem"] for split in examples.values() for e in split}
    from intrain.data.arithmetic import generate_arithmetic as gen

    assert not seen & {p.problem for p in gen(2, 1) + gen(2, 2)}  # never a train or eval problem
    # Slips weighted 1 : 50 sit past the first computation (about 1 in 70 would not), and the card says so.
    synthetic = [e for split in examples.values() for e in split if e["origin"] == "synthetic"]
    first_computation = [
        first_equation_substep([s.text for s in split_substeps(e["attempt"], "\n\n")]) == e["location"]
        for e in synthetic
    ]
    assert len(synthetic) == 10 and sum(first_computation) <= 1
    assert "in proportion to [1.0, 50.0]" in card
    assert set(report["solve"]) == {"pre-warmup", "post-warmup"}
    for key in ("proposer_before", "proposer_after"):
        assert 0 <= report[key]["parse_rate"] <= 1 and report[key]["n"] == report["heldout"]
    # The learning curve: a point per checkpoint (save_steps 1: every step), the final adapter last.
    curve = report["learning_curve"]
    steps = report["training"]["steps"]
    assert [p["step"] for p in curve] == list(range(1, steps + 1)) and steps > 1
    assert [p["examples_seen"] for p in curve] == [4 * s for s in range(1, steps + 1)]
    assert curve[-1]["location_accuracy"] == report["proposer_after"]["location_accuracy"]
    assert f"| {steps} | {4 * steps} | " in card
    # The no-model bar: always naming the first substep with an equation, on the same held-out attempts.
    naive = [
        first_equation_substep([s.text for s in split_substeps(e["attempt"], "\n\n")]) == e["location"]
        for e in examples["heldout"]
    ]
    assert report["proposer_after"]["first_equation_accuracy"] == sum(naive) / len(naive)
    assert "always the first substep with an equation" in card
    after = report["proposer_after"]
    assert len(after["located"]) == report["heldout"] and sum(after["located"]) / report["heldout"] == pytest.approx(
        after["location_accuracy"]
    )

    # scripts/warmup_skill.py: with the warm-up's own sampling seed (7) it reproduces the warm-up's
    # measurement attempt for attempt; an adapter against itself differs by nothing.
    out = tmp_path / "skill.json"
    command = [
        sys.executable,
        str(WARMUP_SKILL),
        str(path),
        "--examples",
        str(tmp_path / "run" / "warmup" / "examples.json"),
    ]
    command += [
        "--adapters",
        str(tmp_path / "adapter"),
        str(tmp_path / "adapter"),
        "--seeds",
        "7",
        "8",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    skill = json.loads(out.read_text())
    assert [(r["seed"], r["location_accuracy"]) for r in skill["runs"][:1]] == [(7, after["location_accuracy"])]
    assert skill["runs"][0]["by_origin"] == after["by_origin"] and len(skill["runs"]) == 4
    assert skill["summary"][1]["difference_from_first"] == [0.0, 0.0, 0.0]
    mean = sum(r["location_accuracy"] for r in skill["runs"][:2]) / 2
    assert skill["summary"][0]["location_accuracy"] == pytest.approx(mean)
    assert sum(skill["attempts"].values()) == report["heldout"]
    missing = subprocess.run(
        command[:3] + ["--examples", str(tmp_path / "nope.json")] + command[5:], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "nope.json" in missing.stderr and "Traceback" not in missing.stderr


def test_first_equation_substep_skips_prose():
    assert first_equation_substep(["Let me think step by step.", "First, 2 + 3 = 5.", "Then 5 * 2 = 11."]) == 2
    assert first_equation_substep(["Five and two.", "The answer is \\boxed{7}."]) is None

"""Stage rules on scripted generators: the filter's early stop both ways, and the statuses and funnel
of the propose stage's own rows (leak, not_first)."""

import json

from tiny_configs import write_config

from intrain.config import FilterConfig, load_config
from intrain.engines.base import Completion
from intrain.grading import Grader
from intrain.pipeline import funnel
from intrain.records import Proposal, Rollout
from intrain.stages import propose
from intrain.stages.common import RunContext
from intrain.stages.filter import filter_shard
from intrain.steps import split_substeps
from intrain.store import Stage


class Scripted:
    """Answers every request with `reply(request, sample_index)`; counts samples per problem."""

    def __init__(self, reply):
        self.reply = reply
        self.samples: dict[str, int] = {}

    def generate(self, requests, sampling, on_progress=None):
        out = []
        for r in requests:
            key = r.messages[0]["content"]
            start = self.samples.get(key, 0)
            self.samples[key] = start + r.n
            out.append(
                [
                    Completion(
                        text=self.reply(r, start + i),
                        token_ids=[1],
                        finish_reason="stop",
                        logprobs=None,
                        prompt_tokens=1,
                    )
                    for i in range(r.n)
                ]
            )
        return out


def proposal(problem: str, answer: str = "5") -> Proposal:
    return Proposal(
        problem_id=problem,
        attempt_id=f"{problem}#0",
        proposal_index=0,
        source="s",
        problem=problem,
        answer=answer,
        reference_solution="r",
        attempt="a",
        num_substeps=1,
        shown_substeps=1,
        truncated=False,
        solve_output=None,
        proposer_output="",
        proposer_finish_reason="stop",
        status="ok",
        content="c",
        location=1,
        guided_prefix="prefix",
        original_step_prefix="orig",
    )


def test_filter_stops_once_min_correct_is_reached_or_out_of_reach():
    always = {"good": "\\boxed{5}", "bad": "\\boxed{4}", "late": None}

    def reply(request, index):
        kind = request.messages[0]["content"]
        if kind == "late":  # correct only from the 5th sample on
            return "\\boxed{5}" if index >= 4 else "\\boxed{4}"
        return always[kind]

    generator = Scripted(reply)
    fcfg = FilterConfig(n=6, wave_size=2, min_correct=3, max_tokens=8)
    with Grader(workers=1, timeout_s=10) as grader:
        results = filter_shard(
            [proposal("good"), proposal("bad"), proposal("late")], generator, grader, fcfg, "{problem}", shard=0
        )
    by_problem = {r.problem_id: r for r in results}
    # 3 correct needs two waves; the decision is fixed then.
    assert (by_problem["good"].continuations, by_problem["good"].continuations_correct) == (4, 4)
    assert by_problem["good"].kept and by_problem["good"].example_continuation == "\\boxed{5}"
    # After two all-wrong waves only 2 samples remain: 3 correct is out of reach, sampling stops at 4 of 6.
    assert (by_problem["bad"].continuations, by_problem["bad"].continuations_correct) == (4, 0)
    assert not by_problem["bad"].kept
    # 0 correct after two waves, 2 remaining < 3: stops before its late successes.
    assert by_problem["late"].continuations == 4 and not by_problem["late"].kept
    assert generator.samples == {"good": 4, "bad": 4, "late": 4}


def test_propose_rows_carry_leak_and_not_first_statuses_and_the_funnel_counts_them(tmp_path, tiny_model_dir):
    config = load_config(
        write_config(tmp_path, tiny_model_dir, propose={"n": 3, "template": "compact", "max_prompt_tokens": 4096})
    )
    ctx = RunContext(config=config, run_dir=tmp_path / "run")
    attempt = Rollout(
        problem_id="p1",
        source="s",
        problem="What is 2 + 3?",
        answer="5",
        reference_solution="2 + 3 = 5.\n\nSo \\boxed{5}.",
        sample_index=0,
        completion="First, 2 + 3 = 6.\n\nSo \\boxed{6}.",
        completion_tokens=9,
        prompt_tokens=5,
        finish_reason="stop",
        correct=False,
        reason="wrong",
        extracted="6",
    )
    sample_stage = Stage(ctx.run_dir, "sample", "h")
    sample_stage.write_records(0, [attempt], Rollout)
    sample_stage.finish({"problems": 1, "rollouts": 1, "correct": 0, "failed": 1, "truncated": 0})
    replies = [
        '<intervention>{"content": "Recompute: 2 + 3 = 5.", "location": 1}</intervention>',  # states the answer
        '<intervention>{"content": "Recompute the sum carefully.", "location": 1}</intervention>',
        '<intervention>{"content": "Add the two numbers again.", "location": 1}</intervention>',
    ]
    ctx._generators[(config.model.path, config.model.adapter, config.model.engine)] = Scripted(
        lambda request, index: replies[index]
    )
    stage = propose.run(ctx)
    rows = stage.records(Proposal)
    assert [r.status for r in rows] == ["leak", "ok", "not_first"]
    assert rows[1].guided_prefix == "Recompute the sum carefully."
    assert rows[1].original_step_prefix == "First, 2 + 3 = 6."
    counts = json.loads((stage.path / "manifest.json").read_text())["counts"]
    assert (counts["leak"], counts["ok"], counts["not_first"]) == (1, 1, 1)
    steps = dict(funnel(sample_stage.manifest()["counts"], counts, {"kept": 0}, {"sft_rows": 0}))
    assert steps["parsed"] == 3 and steps["not leaking"] == 2 and steps["first per attempt"] == 1
    ctx.close()


def test_propose_locates_by_quote_and_records_it(tmp_path, tiny_model_dir):
    """A proposer that quotes the false equation but miscounts (or omits) the substep number gets the
    quoted substep; the quote is stored on the row; a quote of a substep cut from the prompt is not used."""
    config = load_config(
        write_config(
            tmp_path,
            tiny_model_dir,
            propose={"n": 3, "template": "compact", "max_prompt_tokens": 4096, "per_attempt": "all"},
        )
    )
    ctx = RunContext(config=config, run_dir=tmp_path / "run")
    attempt = Rollout(
        problem_id="p1",
        source="s",
        problem="What is (2 + 3) * 2?",
        answer="10",
        reference_solution="2 + 3 = 5.\n\n5 * 2 = 10.\n\nSo \\boxed{10}.",
        sample_index=0,
        completion="First, 2 + 3 = 6.\n\nThen 6 * 2 = 12.\n\nSo \\boxed{12}.",
        completion_tokens=9,
        prompt_tokens=5,
        finish_reason="stop",
        correct=False,
        reason="wrong",
        extracted="12",
    )
    sample_stage = Stage(ctx.run_dir, "sample", "h")
    sample_stage.write_records(0, [attempt], Rollout)
    sample_stage.finish({"problems": 1, "rollouts": 1, "correct": 0, "failed": 1, "truncated": 0})
    replies = [
        '<intervention>{"content": "Recompute the sum carefully.", "quote": "2 + 3 = 6", "location": 2}</intervention>',
        '<intervention>{"content": "Add the two numbers again.", "quote": "2+3=6"}</intervention>',
        '<intervention>{"content": "Add the two numbers again.", "quote": "2 + 3 = 7"}</intervention>',
    ]
    ctx._generators[(config.model.path, config.model.adapter, config.model.engine)] = Scripted(
        lambda request, index: replies[index]
    )
    rows = propose.run(ctx).records(Proposal)
    assert [(r.status, r.location, r.quote) for r in rows] == [
        ("ok", 1, "2 + 3 = 6"),  # the quote beats the miscounted location 2
        ("ok", 1, "2+3=6"),  # no location at all, found without spaces
        ("bad_location", None, "2 + 3 = 7"),  # quotes nothing in the attempt, no location to fall back on
    ]
    assert rows[0].guided_prefix == "Recompute the sum carefully."
    assert rows[0].original_step_prefix == "First, 2 + 3 = 6."
    ctx.close()

    # Only the substeps the prompt showed are searched: substep 2 was cut, so its quote falls back to location.
    steps = split_substeps(attempt.completion)
    output = '<intervention>{"content": "Double 5 instead.", "quote": "6 * 2 = 12", "location": 1}</intervention>'
    cut = propose.to_proposal(attempt, 0, output, "stop", steps, 1, True, None, config.propose)
    full = propose.to_proposal(attempt, 0, output, "stop", steps, 3, False, None, config.propose)
    assert (cut.status, cut.location, cut.quote) == ("ok", 1, "6 * 2 = 12")
    assert (full.status, full.location, full.guided_prefix) == ("ok", 2, "First, 2 + 3 = 6.\n\nDouble 5 instead.")


def test_filter_verify_drops_a_lucky_wrong_intervention_and_names_other_families():
    from dataclasses import replace

    import pytest

    from intrain.data import DataError
    from intrain.data.arithmetic import generate_arithmetic

    problem = generate_arithmetic(1, seed=3, steps=(2, 2), max_operand=10, max_result=50)[0]
    base = replace(
        proposal(problem.problem, problem.answer), reference_solution=problem.reference_solution, source="arithmetic"
    )
    right = replace(base, attempt_id="a#0", guided_prefix="Ravi has 5 * 9 = 45 stickers.\n\nThen subtract 7.")
    wrong = replace(base, attempt_id="a#1", guided_prefix="Ravi has 5 * 9 = 44 stickers.\n\nThen subtract 7.")
    lucky = Scripted(lambda request, index: f"\\boxed{{{problem.answer}}}")  # every continuation is correct
    fcfg = FilterConfig(n=2, wave_size=2, min_correct=1, max_tokens=8, verify=True)
    with Grader(workers=1, timeout_s=10) as grader:
        results = filter_shard([right, wrong], lucky, grader, fcfg, "{problem}", shard=0)
    assert [(r.continuations_correct, r.error_free, r.kept) for r in results] == [(2, True, True), (2, False, False)]
    assert results[0].continuations == 2  # verification does not change the sampling
    from intrain.stages.propose import check_ground_truth

    with pytest.raises(DataError, match=r"filter\.verify: only the arithmetic family has ground truth.*gsm8k"):
        check_ground_truth([replace(base, source="gsm8k")], "filter.verify")

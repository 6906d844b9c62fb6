"""Which `ok` proposals of an attempt go on to the filter (paper: one intervention per failed attempt)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class _Selectable(Protocol):
    attempt_id: str
    status: str


def mark_not_first(proposals: Sequence[_Selectable]) -> None:
    """Keep the first `ok` proposal of each attempt; later `ok` ones become `not_first`, so the
    filter spends no samples on them. Other statuses neither change nor claim the attempt."""
    seen: set[str] = set()
    for p in proposals:
        if p.status != "ok":
            continue
        if p.attempt_id in seen:
            p.status = "not_first"
        seen.add(p.attempt_id)

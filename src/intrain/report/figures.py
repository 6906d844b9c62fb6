"""The report's figures: matplotlib (the 'plot' extra) drawn off-screen and embedded as base64 PNG
data URIs, so the page opens offline with nothing beside it. Without matplotlib every function here
returns None and the page says why its figures are missing."""

from __future__ import annotations

import base64
import io
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from intrain.report.collect import FunnelRow, Located, PassCurve
from intrain.report.model import NLL, Entropy

RL_PANELS = (
    ("reward", "training reward"),
    ("zero_adv_ratio", "zero-advantage ratio"),
    ("completion_length", "completion length (tokens)"),
    ("entropy", "entropy (nats)"),
)


@dataclass(frozen=True)
class Figure:
    title: str
    uri: str  # data:image/png;base64,...


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # off-screen: the report is written by CLIs and tests without a display
    import matplotlib.pyplot as plt

    return plt


def _embed(fig: Any, title: str) -> Figure:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return Figure(title, "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))


def funnel_figure(rows: Sequence[FunnelRow]) -> Figure | None:
    if not available() or not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1))
    labels = [row.step for row in rows][::-1]
    ax.barh(labels, [row.total for row in rows][::-1], color="#4c72b0")
    for y, row in enumerate(rows[::-1]):
        ax.text(row.total, y, f" {row.total:,}", va="center", fontsize=8)
    ax.set_xlabel("count (all sources)")
    return _embed(fig, "Funnel")


def location_figure(located: Sequence[Located]) -> Figure | None:
    if not available() or not located:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    top = max(item.location for item in located)
    axes[0].hist([item.location for item in located], bins=range(1, top + 2), align="left", color="#4c72b0")
    axes[0].set_xlabel("flagged substep (1-based)")
    axes[0].set_ylabel("proposals")
    axes[1].hist([item.relative for item in located], bins=[i / 10 for i in range(11)], color="#55a868")
    axes[1].set_xlabel("relative position (location / substeps)")
    axes[2].scatter(
        [item.attempt_chars for item in located], [item.intervention_chars for item in located], s=10, alpha=0.6
    )
    axes[2].set_xlabel("attempt length (characters)")
    axes[2].set_ylabel("intervention length (characters)")
    return _embed(fig, "First-error location and intervention length")


def nll_figure(results: Sequence[NLL]) -> Figure | None:
    rows = [r for r in results if r.per_row]
    if not available() or not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.hist([r.per_row for r in rows], bins=20, label=[f"{r.kind} ({r.mean:.2f})" for r in rows], alpha=0.8)
    ax.set_xlabel("mean NLL per target token under the base model (nats)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    return _embed(fig, "On-policy-ness of SFT data")


def entropy_figure(rows: Sequence[Entropy]) -> Figure | None:
    if not available() or not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    names = [r.arm for r in rows]
    ax.bar(names, [r.nats for r in rows], color=["#8c8c8c" if r.model is None else "#4c72b0" for r in rows])
    ax.set_ylabel("mean next-token entropy (nats)")
    ax.tick_params(axis="x", labelrotation=20)
    return _embed(fig, "Entropy before (grey: base policy) and after SFT")


def rl_figure(logs: dict[str, list[dict[str, Any]]]) -> Figure | None:
    if not available() or not logs:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    for ax, (key, title) in zip(axes.flat, RL_PANELS):
        for stage, records in logs.items():
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 20 else None, markersize=3, label=stage)
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=7)
    return _embed(fig, "RL curves per arm and seed")


def pass_figure(curves: Sequence[PassCurve]) -> Figure | None:
    if not available() or not curves:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    by_source: dict[str, list[PassCurve]] = defaultdict(list)
    for curve in curves:
        by_source[curve.source].append(curve)
    fig, axes = plt.subplots(1, len(by_source), figsize=(6 * len(by_source), 4), squeeze=False)
    for ax, (source, group) in zip(axes[0], by_source.items()):
        for curve in group:
            (line,) = ax.plot(curve.ks, curve.mean, marker="o", markersize=3, label=curve.stage)
            ax.fill_between(curve.ks, curve.low, curve.high, color=line.get_color(), alpha=0.15)
        problems = statistics.median(c.problems for c in group)
        ax.set_title(f"{source} ({problems:.0f} problems)")
        ax.set_xlabel("k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("pass@k")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return _embed(fig, "pass@k with 95% bootstrap intervals over problems")

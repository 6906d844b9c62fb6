"""`intrain runs [DIR]`: the run directories under DIR (default `runs`) as one table: stages, status,
fingerprint and headline numbers. A run directory is a folder with at least one stage folder (a folder
holding a manifest.json); it is listed, not searched further. Nothing is locked or written.

Status: `refused` when a stage's last opening was refused (its config changed, no --force: the store
leaves RUN/.refused/<stage>.json), else `complete` when every stage's manifest says complete, else
`partial` (a stage is running, or was killed mid-way: re-running resumes it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from intrain.config import ConfigError
from intrain.report.collect import stage_manifests
from intrain.store import refused_stages

# How deep under DIR to look for run directories (runs/<group>/<seed>/ is two levels).
MAX_DEPTH = 3
SHOWN_STAGES = 6


@dataclass
class RunSummary:
    path: Path
    stages: list[str]
    status: str
    fingerprint: str
    eval_label: str | None
    eval_pass1: float | None
    kept: int | None
    sft_rows: int | None
    rl_steps: int | None
    updated: str


def find_runs(root: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Run directories at or under `root` (down to `depth` levels), in path order."""
    if stage_manifests(root):
        return [root]
    if depth == 0:
        return []
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += find_runs(child, depth - 1)
    return found


def run_fingerprint(manifests: dict[str, dict[str, Any]]) -> str:
    """One short hash of every stage's fingerprint (manifest config_hash): two runs share it exactly when
    their stages were produced from the same declared inputs (fingerprints.py)."""
    lines = "".join(f"{name}={m.get('config_hash')}\n" for name, m in sorted(manifests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def summarize(path: Path) -> RunSummary:
    manifests = stage_manifests(path)
    refused = refused_stages(path)
    if refused:
        status = "refused: " + ", ".join(sorted(refused))
    elif all(m.get("status") == "complete" for m in manifests.values()):
        status = "complete"
    else:
        status = "partial: " + ", ".join(n for n, m in manifests.items() if m.get("status") != "complete")

    def count(stage: str, key: str) -> int | None:
        value = (manifests.get(stage) or {}).get("counts", {}).get(key)
        return value if isinstance(value, int) else None

    label, pass1 = latest_eval(path, manifests)
    rl_stages = [n for n in manifests if n == "rl" or n.startswith("rl-")]
    steps = [count(n, "steps") for n in rl_stages]
    return RunSummary(
        path=path,
        stages=list(manifests),
        status=status,
        fingerprint=run_fingerprint(manifests),
        eval_label=label,
        eval_pass1=pass1,
        kept=count("filter", "kept"),
        sft_rows=count("sft", "sft_rows"),
        rl_steps=sum(s for s in steps if s is not None) if rl_stages else None,
        updated=max(str(m.get("updated", "")) for m in manifests.values()),
    )


def latest_eval(path: Path, manifests: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    """(label, overall pass@1) of the most recently finished eval stage (`manifests` in stage order)."""
    done = [(str(m.get("updated", "")), i, n) for i, (n, m) in enumerate(manifests.items()) if n.startswith("eval-")]
    for _, _, name in sorted(done, reverse=True):
        if manifests[name].get("status") != "complete":
            continue
        try:
            overall = json.loads((path / name / "eval.json").read_text()).get("overall", {})
        except (OSError, json.JSONDecodeError):
            continue
        return name.removeprefix("eval-"), overall.get("pass@1")
    return None, None


def list_runs(root: Path, console: Console) -> int:
    """Print the table of runs under `root`; a message when there is none. Returns the number listed."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    if not root.exists():
        console.print(
            f"no runs: {root} does not exist (a run directory is output.run_dir, or --run-dir)", soft_wrap=True
        )
        return 0
    runs = find_runs(root)
    if not runs:
        console.print(
            f"no runs under {root}: no folder there holds a stage folder with a manifest.json", soft_wrap=True
        )
        return 0
    table = Table(title=f"runs under {root}", title_justify="left")
    for column in ("run", "stages", "status", "fingerprint", "latest eval pass@1", "kept", "SFT rows", "RL steps"):
        table.add_column(column, overflow="fold")
    table.add_column("updated", no_wrap=True)
    for path in runs:
        s = summarize(path)
        more = len(s.stages) - SHOWN_STAGES
        shown = ", ".join(s.stages[:SHOWN_STAGES]) + (f" (+{more})" if more > 0 else "")
        style = "green" if s.status == "complete" else "red" if s.status.startswith("refused") else "yellow"
        # Text, not markup: folder names are the user's and may hold brackets.
        table.add_row(
            Text(str(path.relative_to(root)) if path != root else str(path)),
            Text(shown),
            Text(s.status, style=style),
            s.fingerprint,
            "-" if s.eval_pass1 is None else f"{s.eval_pass1:.3f} ({s.eval_label})",
            _int(s.kept),
            _int(s.sft_rows),
            _int(s.rl_steps),
            s.updated,
        )
    console.print(table)
    return len(runs)


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"

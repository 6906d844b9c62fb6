"""`intrain report RUN_DIR`: the sections of a run's report, rendered twice from the same data: a
self-contained HTML page (templates/report.html.j2: inline CSS, PNG figures as data URIs, two small
inline scripts, no network) and a Markdown summary beside it. A section whose stages are missing, or
that needs a model under `--no-model`, is kept with the reason it is empty.

Every piece of model text (attempts, interventions, continuations, problems, references) reaches the
page through Jinja's autoescaping: it is untrusted and must never become markup.
"""

from __future__ import annotations

import base64
import hashlib
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from intrain.config import Config
from intrain.report import collect, figures, model
from intrain.report.figures import Figure
from intrain.steps import DEFAULT_SEPARATOR
from intrain.store import atomic_write_text, refused_stages

HTML_NAME = "intrain-report.html"
CSP_PLACEHOLDER = "__CONTENT_SECURITY_POLICY__"
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    key: str
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the section is empty


@dataclass
class Report:
    html: Path
    markdown: Path
    seconds: float
    sections: list[Section]


def build_report(
    run_dir: Path,
    config: Config | None = None,
    use_model: bool = True,
    out: Path | None = None,
    gallery_size: int = 40,
    model_rows: int = 32,
) -> Report:
    """Write the run's HTML report (default RUN/intrain-report.html) and its Markdown summary (.md beside it)."""
    started = time.time()
    run = collect.open_run(Path(run_dir))
    separator = config.propose.separator if config is not None else DEFAULT_SEPARATOR
    sections = [
        stages_section(run),
        funnel_section(run),
        location_section(run),
        nll_section(run, config, use_model, model_rows),
        entropy_section(run, config, use_model, model_rows),
        rl_section(run),
        pass_section(run),
    ]
    attempts, total = collect.gallery(run, gallery_size, separator) if run.has("propose") else ([], 0)
    html_path = Path(out) if out is not None else run.path / HTML_NAME
    markdown_path = html_path.with_suffix(".md")
    context = dict(
        run=run.path.resolve(),
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        sections=sections,
        attempts=attempts,
        attempts_total=total,
        gallery_skipped=None if run.has("propose") else "the propose stage has not run: no attempts to show",
        figure_count=sum(len(s.figures) for s in sections),
        matplotlib=figures.available(),
    )
    atomic_write_text(html_path, render_html(context))
    atomic_write_text(markdown_path, render_markdown(run.path, sections, len(attempts), total))
    return Report(html_path, markdown_path, round(time.time() - started, 2), sections)


def render_html(context: dict) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("intrain", "templates"),
        autoescape=True,  # model text is untrusted: every {{ }} is escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return with_content_security_policy(env.get_template("report.html.j2").render(context, csp=CSP_PLACEHOLDER))


def with_content_security_policy(page: str) -> str:
    """Fill in the page's policy: nothing loaded from anywhere, images only from data URIs, and only the
    template's own scripts (by hash) run. Escaping keeps model text from becoming markup; should it ever
    fail, an injected script or event handler would still not run, nor fetch anything."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _SCRIPT.findall(page)
    )
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {hashes}"
    return page.replace(CSP_PLACEHOLDER, policy, 1)


def render_markdown(run_dir: Path, sections: list[Section], shown: int, total: int) -> str:
    lines = [f"# intrain report: {run_dir.name}", "", f"Run directory: `{run_dir}`.", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.intro, ""]
        if section.skipped:
            lines += [f"_Skipped: {section.skipped}._", ""]
        for table in section.tables:
            lines += [_md_row(table.header), "|" + "---|" * len(table.header)]
            lines += [_md_row(row) for row in table.rows] + [""]
        lines += [f"- {note}" for note in section.notes] + ([""] if section.notes else [])
        lines += [f"_Figure in the HTML page: {figure.title}._" for figure in section.figures]
        lines += [""] if section.figures else []
    lines += ["## Gallery", "", f"{shown} of {total} proposed-on attempts are in the HTML page's gallery.", ""]
    return "\n".join(lines)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------- sections


def stages_section(run: collect.Run) -> Section:
    section = Section("stages", "Stages", "Every stage folder of the run, as its manifest records it.")
    refused = refused_stages(run.path)
    rows = []
    for name, manifest in run.manifests.items():
        status = manifest.get("status", "?") + (" (last opening refused)" if name in refused else "")
        wall = manifest.get("timings", {}).get("wall_s")
        rows.append([name, status, _fmt(wall, 1), str(manifest.get("updated", "-"))])
    section.tables.append(Table(["stage", "status", "wall s", "updated"], rows))
    return section


def funnel_section(run: collect.Run) -> Section:
    section = Section(
        "funnel",
        "Funnel",
        "From the training problems to the SFT rows, per data source. Finished stages give their manifests' "
        "counts; a stage still running gives the rows it has written so far.",
    )
    sources, rows, notes = collect.funnel(run)
    section.notes += notes
    if not rows:
        section.skipped = "the sample stage has not run"
        return section
    header = ["step", "all", *sources] if len(sources) > 1 else ["step", "all"]
    table = []
    for row in rows:
        cells = [row.step + (" (running)" if row.running else ""), f"{row.total:,}"]
        if len(sources) > 1:
            cells += ["-" if row.by_source[s] is None else f"{row.by_source[s]:,}" for s in sources]
        table.append(cells)
    section.tables.append(Table(header, table))
    found = figures.funnel_figure(rows)
    section.figures += [found] if found else []
    return section


def location_section(run: collect.Run) -> Section:
    section = Section(
        "locations",
        "First-error location",
        "Where the proposer puts the first error (proposals with a usable location: ok, leak, not_first): the "
        "substep, its position relative to the attempt's substeps, and the intervention's length against the "
        "attempt's.",
    )
    if not run.has("propose"):
        section.skipped = "the propose stage has not run"
        return section
    located = collect.locations(run)
    if not located:
        section.skipped = "no proposal has a usable location"
        return section
    groups = {"all": located}
    for item in located:
        groups.setdefault(item.source, []).append(item)
    rows = []
    for source, items in groups.items():
        if source == "all" or len(groups) > 2:
            rows.append(
                [
                    source,
                    str(len(items)),
                    _fmt(statistics.median(i.location for i in items), 1),
                    _fmt(statistics.median(i.relative for i in items), 2),
                    f"{statistics.fmean(i.intervention_chars for i in items):,.0f}",
                    f"{statistics.fmean(i.attempt_chars for i in items):,.0f}",
                ]
            )
    header = ["source", "proposals", "median substep", "median relative", "intervention chars", "attempt chars"]
    section.tables.append(Table(header, rows))
    found = figures.location_figure(located)
    section.figures += [found] if found else []
    return section


def nll_section(run: collect.Run, config: Config | None, use_model: bool, limit: int) -> Section:
    section = Section(
        "onpolicy",
        "On-policy-ness of SFT data",
        f"Mean per-token negative log-likelihood under the base model of each SFT data set's target tokens "
        f"(up to {limit} rows each, CPU). Lower: text closer to what the base model writes itself (paper Fig. 9).",
    )
    base = model.base_model(run, config)
    if not use_model:
        section.skipped = "--no-model"
    elif not any(run.complete(stage) for stage in model.SFT_KINDS):
        section.skipped = "no SFT stage has finished"
    elif base is None:
        section.skipped = "the base model is unknown: pass the run's config (--config)"
    if section.skipped:
        return section
    assert base is not None
    results = model.sft_data_nll(run, base[0], base[1], limit)
    section.notes.append(f"base model: {base[0]}" + (f" + adapter {base[1]}" if base[1] else ""))
    rows = [
        [r.kind, r.stage, str(len(r.per_row)), f"{r.tokens:,}", _fmt(r.mean), _fmt(statistics.median(r.per_row))]
        for r in results
        if r.per_row
    ]
    section.tables.append(Table(["data", "stage", "rows", "tokens", "NLL / token", "median row NLL"], rows))
    found = figures.nll_figure(results)
    section.figures += [found] if found else []
    return section


def entropy_section(run: collect.Run, config: Config | None, use_model: bool, limit: int) -> Section:
    section = Section(
        "entropy",
        "Next-token entropy before and after SFT",
        "Mean next-token entropy over the base policy's eval completions, of the base policy and of each "
        "arm's starting checkpoint for RL (paper Fig. 8).",
    )
    rows = model.entropy_from_compare(run)
    if rows:
        section.notes.append("from compare.json (entropy_at_rl_start)")
    elif not use_model:
        section.skipped = "--no-model, and no compare.json to read it from"
    elif config is None:
        section.skipped = "no compare.json; pass the run's config (--config) to measure it"
    elif not any(run.complete(stage) and run.manifests[stage].get("model") for stage in model.SFT_KINDS):
        section.skipped = "no SFT stage has trained a model"
    else:
        rows = model.entropy_before_after(run, config, limit)
        section.notes.append(f"measured now over up to {limit} completions, on the CPU")
    if section.skipped or not rows:
        section.skipped = section.skipped or "no completions to measure on"
        return section
    base = next((r.nats for r in rows if r.model is None and r.arm == "base"), None)
    table = [
        [r.arm, r.model or "(base policy)", _fmt(r.nats), _fmt(None if base is None else r.nats - base)] for r in rows
    ]
    section.tables.append(Table(["arm / stage", "model", "entropy (nats)", "Δ vs base"], table))
    found = figures.entropy_figure(rows)
    section.figures += [found] if found else []
    return section


def rl_section(run: collect.Run) -> Section:
    section = Section(
        "rl",
        "RL curves",
        "Per RL stage (arm and seed): training reward, share of groups with zero advantage, completion length "
        "and entropy per optimizer step, from each stage's log.jsonl.",
    )
    logs = collect.rl_logs(run)
    if not logs:
        section.skipped = "no RL stage has logged a step"
        return section
    rows = []
    for stage, records in logs.items():

        def mean(key: str, records: list[dict] = records) -> float | None:
            values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
            return statistics.fmean(values) if values else None

        last = records[-1]
        rows.append(
            [
                stage,
                str(last["step"]),
                _fmt(mean("reward")),
                _fmt(last.get("reward")),
                _fmt(mean("zero_adv_ratio")),
                _fmt(mean("completion_length"), 1),
                _fmt(last.get("entropy")),
            ]
        )
    header = ["stage", "steps", "mean reward", "last reward", "zero-adv ratio", "completion length", "last entropy"]
    section.tables.append(Table(header, rows))
    found = figures.rl_figure(logs)
    section.figures += [found] if found else []
    return section


def pass_section(run: collect.Run) -> Section:
    section = Section(
        "passk",
        "pass@k before and after",
        "Unbiased pass@k for k = 1..n of every finished eval stage, per source, with 95% percentile bootstrap "
        "intervals over problems (2000 resamples, seed 0).",
    )
    curves = collect.pass_curves(run)
    if not curves:
        section.skipped = "no eval stage has finished"
        return section
    top = max(max(c.ks) for c in curves)
    header = ["eval stage", "source", "problems", *[f"pass@{k} [95% CI]" for k in range(1, top + 1)]]
    rows = []
    for c in curves:
        cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(c.mean, c.low, c.high)]
        rows.append([c.stage, c.source, str(c.problems), *cells, *["-"] * (top - len(cells))])
    section.tables.append(Table(header, rows))
    found = figures.pass_figure(curves)
    section.figures += [found] if found else []
    return section

"""`intrain report` and RUN/metrics.jsonl on a tiny end-to-end run.

One run directory gets `intrain run` (sample -> eval -> propose -> filter -> sft -> eval -> rl -> eval) and
`intrain compare --arms rl sft_reference` (another SFT data set, two more RL arms, compare.json). The
proposer is scripted and its intervention is hostile HTML: the page must show it as text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import markupsafe
import pytest
from tiny_configs import write_config

from conftest import ScriptedProposerAndContinuer
from intrain.cli import main
from intrain.data.arithmetic import generate_arithmetic
from intrain.report.build import build_report

HOSTILE = "<script>document.title='pwned'</script> & <img src=x onerror=\"document.title='pwned'\"> redo it"
ANSWERS = {p.problem: p.answer for p in generate_arithmetic(4, seed=11)}  # write_config's training problems
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class HostileProposer(ScriptedProposerAndContinuer):
    """The integration proposer with HOSTILE as its intervention."""

    proposal = "<intervention>" + json.dumps({"content": HOSTILE, "location": 1}) + "</intervention>"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    from intrain.stages import common

    tmp = tmp_path_factory.mktemp("report")
    config = write_config(
        tmp,
        tiny_model_dir,
        sample={"n": 2, "max_tokens": 10, "shard_size": 2},
        propose={"n": 2, "template": "compact", "max_prompt_tokens": 4096, "shard_size": 3},
        filter={"n": 4, "wave_size": 2, "shard_size": 4},
        sft={"learning_rate": 1e-3, "epochs": 1, "effective_batch_size": 2, "per_device_batch_size": 2},
        rl={"enabled": True, "steps": 2, "group_size": 2, "prompts_per_step": 2, "max_completion_tokens": 6},
        eval={"n": 3, "ks": [1, 3], "max_tokens": 8, "shard_size": 2},
        compare={"seeds": [0], "baseline_seeds": [0]},
    )
    with pytest.MonkeyPatch.context() as patch:
        real = common.build_generator
        patch.setattr(common, "build_generator", lambda *a, **k: HostileProposer(real(*a, **k)))
        assert main(["run", config]) == 0
        assert main(["compare", config, "--arms", "rl", "sft_reference"]) == 0
    return tmp / "run", config


@pytest.fixture(scope="module")
def full_report(tiny_run):
    run, config = tiny_run
    report = build_report(run, config=_config(config))
    return report, report.html.read_text(), report.markdown.read_text()


def _config(path):
    from intrain.config import load_config

    return load_config(path)


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """The rows (header first) of the first table under `heading`."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def manifest(run, stage):
    return json.loads((run / stage / "manifest.json").read_text())


def test_report_numbers_are_the_runs(tiny_run, full_report):
    run, _ = tiny_run
    report, page, summary = full_report
    funnel = {row[0]: int(row[1]) for row in markdown_table(summary, "## Funnel")[1:]}
    sample, propose, filtered, sft = (manifest(run, s)["counts"] for s in ("sample", "propose", "filter", "sft"))
    assert funnel["problems"] == sample["problems"] == 4 and funnel["rollouts"] == sample["rollouts"] == 8
    assert funnel["failed rollouts"] == sample["failed"]
    assert funnel["attempts proposed on"] == propose["failed_attempts"]
    assert funnel["proposals"] == propose["proposals"]
    for status in ("ok", "no_tag", "bad_json", "bad_location", "empty", "leak", "not_first"):
        assert funnel[f"· {status}"] == propose[status]
    assert 0 < funnel["kept by the continuation filter"] == filtered["kept"] < propose["ok"]
    assert funnel["SFT examples"] == sft["examples"] and funnel["SFT rows (≤ sft.max_length)"] == sft["sft_rows"]

    # Fig. 9: every SFT data set of the run, scored by the base model; Fig. 8 from compare.json.
    nll = {row[0]: row for row in markdown_table(summary, "## On-policy-ness")[1:]}
    assert set(nll) == {"InT: own prefix + intervention", "reference solutions"}
    assert all(float(row[4]) > 0 and int(row[2]) == manifest(run, row[1])["counts"]["examples"] for row in nll.values())
    entropy = {row[0] for row in markdown_table(summary, "## Next-token entropy")[1:]}
    assert entropy == {"base", "rl", "sft_reference"} and "from compare.json" in summary
    rl_rows = {row[0]: row for row in markdown_table(summary, "## RL curves")[1:]}
    assert set(rl_rows) == {"rl-int-s0", "rl-rl-s0", "rl-sft_reference-s0"}
    assert all(int(row[1]) == manifest(run, stage)["counts"]["steps"] == 2 for stage, row in rl_rows.items())
    passk = markdown_table(summary, "## pass@k")
    assert passk[0][3:] == ["pass@1 [95% CI]", "pass@2 [95% CI]", "pass@3 [95% CI]"]
    assert {row[0] for row in passk[1:]} == {p.parent.name for p in run.glob("eval-*/manifest.json")}
    base = next(row for row in passk[1:] if row[0] == "eval-base")
    overall = json.loads((run / "eval-base" / "eval.json").read_text())["overall"]
    assert base[3].startswith(f"{overall['pass@1']:.3f} [") and base[5].startswith(f"{overall['pass@3']:.3f} [")

    # Self-contained: every figure inline, nothing fetched.
    assert page.count('<img src="data:image/png;base64,') == 6 == sum(len(s.figures) for s in report.sections)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "default-src 'none'; img-src data:;" in page  # and the page's policy could not fetch any
    # Model text is escaped, never markup.
    assert str(markupsafe.escape(HOSTILE)) in page
    assert HOSTILE not in page and "<script>document.title" not in page and "<img src=x" not in page
    assert page.count('<article class="attempt"') == propose["failed_attempts"] == 8
    assert page.count("Skipped:") == 0 and "Skipped" not in summary


def test_metrics_jsonl_has_each_finished_stage_and_each_rl_step(tiny_run):
    run, _ = tiny_run
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(set(line) == {"time", "stage", "event", "step", "metrics"} for line in lines)
    finished = Counter(line["stage"] for line in lines if line["event"] == "finish")
    assert finished == Counter({p.parent.name: 1 for p in run.glob("*/manifest.json")})
    for line in lines:
        if line["event"] == "finish":
            recorded = manifest(run, line["stage"])
            assert line["metrics"].items() >= {**recorded["counts"], **recorded["timings"]}.items()
    base = next(line for line in lines if line["stage"] == "eval-base")
    assert base["metrics"]["pass@1"] == json.loads((run / "eval-base" / "eval.json").read_text())["overall"]["pass@1"]
    steps = [line for line in lines if line["event"] == "step"]
    assert Counter(line["stage"] for line in steps) == {"rl-int-s0": 2, "rl-rl-s0": 2, "rl-sft_reference-s0": 2}
    assert all("reward" in line["metrics"] and "groups" not in line["metrics"] for line in steps)
    assert [line["step"] for line in steps if line["stage"] == "rl-rl-s0"] == [1, 2]


def _browser() -> str | None:
    return next((found for found in map(shutil.which, BROWSERS) if found), None)


def dump_dom(browser: str, url: str, profile) -> str:
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # root in a container has no user namespace sandbox
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    _browser() is None,
    reason=f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); `make setup` installs chromium",
)
def test_the_page_draws_every_figure_without_script_errors_in_a_browser(full_report, tmp_path):
    report, page, _ = full_report
    browser = _browser()
    assert browser is not None
    dom = dump_dom(browser, report.html.as_uri(), tmp_path / "profile")
    check = re.search(r'<p id="self-check"([^>]*)>', dom)
    assert check is not None, dom[:2000]
    attributes = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', check.group(1)))
    assert attributes["data-done"] == "1", "the page's check did not run"
    assert attributes["data-errors"] == "0", re.search(r'<pre id="js-errors">(.*?)</pre>', dom, re.S)
    assert int(attributes["data-expected"]) == int(attributes["data-figures"]) == int(attributes["data-drawn"]) == 6
    assert "<title>intrain report: run</title>" in dom  # the hostile intervention never ran

    # The gallery's search, through a link: only the attempts of that problem stay visible.
    problem = re.search(r'data-problem="([^"]+)"', page).group(1)
    dom = dump_dom(browser, report.html.as_uri() + f"#problem={problem}", tmp_path / "profile")
    articles = re.findall(r'<article class="attempt" data-problem="([^"]+)"( style="display: none;")?', dom)
    assert articles and all((hidden == "") == (shown == problem) for shown, hidden in articles)
    assert f"{sum(shown == problem for shown, _ in articles)} shown" in dom

    # Defence in depth: had escaping failed, the page's policy would still run only its own scripts.
    injected = tmp_path / "injected.html"
    injected.write_text(page.replace("</body>", "<script>document.title = 'pwned';</script></body>"))
    dom = dump_dom(browser, injected.as_uri(), tmp_path / "profile")
    assert "<title>intrain report: run</title>" in dom and 'data-done="1"' in dom


def test_partial_run_skips_what_is_missing_and_says_so(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    partial = tmp_path / "partial"
    for stage in ("sample", "propose", "filter"):
        shutil.copytree(run / stage, partial / stage)
    running = manifest(partial, "filter") | {"status": "running"}
    (partial / "filter" / "manifest.json").write_text(json.dumps(running))
    assert main(["report", str(partial), "--no-model"]) == 0
    assert "intrain-report.html" in capsys.readouterr().out
    summary = (partial / "intrain-report.md").read_text()
    funnel = {row[0]: row[1] for row in markdown_table(summary, "## Funnel")[1:]}
    assert funnel["kept by the continuation filter (running)"] == str(manifest(run, "filter")["counts"]["kept"])
    assert "SFT examples" not in funnel and "the sft stage has not run" in summary
    assert "_Skipped: --no-model._" in summary
    assert "_Skipped: no RL stage has logged a step._" in summary
    assert "_Skipped: no eval stage has finished._" in summary
    page = (partial / "intrain-report.html").read_text()
    assert page.count('<article class="attempt"') == 8 and "Skipped: --no-model." in page


def test_without_matplotlib_the_page_says_so(tiny_run, tmp_path, monkeypatch):
    run, _ = tiny_run
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    report = build_report(run, use_model=False, out=tmp_path / "report.html")
    page = report.html.read_text()
    assert "matplotlib is not installed" in page and "<img" not in page
    assert 'data-expected="0"' in page and "| rl-int-s0 |" in report.markdown.read_text()


def test_report_of_something_that_is_not_a_run_is_one_line(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["report", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such run directory\n"
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {tmp_path / 'empty'}: not a run directory" in err
    assert main(["report", str(tmp_path), "--gallery", "0"]) == 2
    assert "--gallery 0: must be at least 1" in capsys.readouterr().err

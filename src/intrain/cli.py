"""`intrain` command line: one subcommand per stage, `run` for the whole pass, `demo` for the offline default."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
from pathlib import Path

from intrain.config import ARMS, Config, ConfigError, load_config, to_yaml


def _add_common(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    if config_required:
        p.add_argument("config", help="YAML config path, or a packaged config name (demo, paper-qwen3-4b-instruct)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. --set sample.n=8 (repeatable)",
    )
    p.add_argument("--run-dir", help="run directory (default: output.run_dir)")
    p.add_argument("--force", action="store_true", help="redo stages whose config changed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intrain", description="Intervention Training (InT) for LLM reasoning.")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="inspect configs")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the resolved config")
    show.add_argument("config")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    for name, text in [
        ("sample", "graded on-policy rollouts"),
        ("propose", "self-proposed interventions"),
        ("filter", "continuation filter"),
        ("sft", "SFT on prefix + intervention"),
        ("rl", "outcome-reward GRPO"),
        ("run", "the whole InT pass"),
    ]:
        _add_common(sub.add_parser(name, help=text))
    ev = sub.add_parser("eval", help="pass@k of a checkpoint on held-out problems")
    _add_common(ev)
    ev.add_argument("--model", help="checkpoint to evaluate (default: the configured policy)")
    ev.add_argument("--label", default=None, help="name of the evaluation (default: base, or the checkpoint's name)")

    cmp = sub.add_parser("compare", help="InT against the paper's baselines under one RL budget")
    _add_common(cmp)
    cmp.add_argument("--arms", nargs="+", choices=ARMS, help="arms to run (default: compare.arms)")
    _add_common(sub.add_parser("warmup", help="train a small proposer's verification skill (arithmetic family)"))
    lab = sub.add_parser("lab", help="controlled experiments on the arithmetic family's ground truth")
    lab.add_argument(
        "table",
        choices=["pretrain", "hard-split", "table1", "filter-precision"],
        help="pretrain: train the lab model from scratch on the family (lab.pretrain); hard-split: the "
        "problems the policy fails on all of lab.hard_k samples; table1: does an intervention help a "
        "continuation? filter-precision: how often is a kept intervention right?",
    )
    _add_common(lab)

    judge = sub.add_parser("eval-proposer", help="score the configured proposer on human first-error labels")
    judge.add_argument("--labels", required=True, help="'champ' (champ-dataset package) or a ProcessBench-format JSONL")
    judge.add_argument("--limit", type=int, default=None, help="score the first N labelled solutions only")
    _add_common(judge)

    trace = sub.add_parser("show", help="one problem's attempts, flagged steps, interventions and verdicts")
    trace.add_argument("run_dir", help="a run directory (one with a sample stage)")
    trace.add_argument("--problem", required=True, help="problem id (as in the data source)")

    report = sub.add_parser("report", help="one self-contained HTML page (+ Markdown summary) of what a run did")
    report.add_argument("run_dir", help="a run directory")
    report.add_argument(
        "--config",
        help="the run's config: its model.path is the base model of the model-based sections (default: the one "
        "eval-base evaluated), and entropies before/after SFT are measured with it when there is no compare.json",
    )
    report.add_argument("--no-model", action="store_true", help="skip the sections that load a model")
    report.add_argument("--out", help="HTML file to write (default RUN/intrain-report.html; the .md beside it)")
    report.add_argument("--gallery", type=int, default=40, metavar="N", help="attempts in the gallery (default 40)")
    report.add_argument(
        "--model-rows", type=int, default=32, metavar="N", help="rows per data set the model scores (default 32)"
    )

    runs = sub.add_parser("runs", help="the run directories under DIR: stages, status, headline numbers")
    runs.add_argument("dir", nargs="?", default="runs", help="where to look (default: runs)")

    demo = sub.add_parser("demo", help="the whole pass on the embedded default (offline, CPU)")
    _add_common(demo, config_required=False)
    return parser


def _report(args: argparse.Namespace) -> int:
    from intrain.report.build import build_report

    for flag, value in (("--gallery", args.gallery), ("--model-rows", args.model_rows)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be at least 1")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: must end in .html (the Markdown summary is written beside it as .md)")
    config = load_config(args.config) if args.config else None
    report = build_report(Path(args.run_dir), config, not args.no_model, out, args.gallery, args.model_rows)
    print(f"report: {report.html} and {report.markdown.name} ({report.seconds:.1f} s)")
    return 0


def _run_dir(args: argparse.Namespace, config: Config) -> tuple[Path, str]:
    """The run directory and the name of the setting it came from (for error messages)."""
    if args.run_dir:
        return Path(args.run_dir), "--run-dir"
    return Path(config.output.run_dir), "output.run_dir"


def _check_models(args: argparse.Namespace, config: Config) -> None:
    """Refuse an unusable model before the run directory or a stage folder is touched: first the
    cheap path checks of every model field, then the policy's tokenizer (loadable, with a chat
    template), which every command but `lab pretrain` renders prompts with."""
    from intrain.models import check_model_path, load_tokenizer

    if args.command == "lab" and args.table == "pretrain":
        return  # builds a model from scratch; model.path may name the folder it is about to write
    policy, field = (
        (args.model, "--model") if args.command == "eval" and args.model else (config.model.path, "model.path")
    )
    check_model_path(policy, field)
    _check_adapter(config.model.adapter, "model.adapter")
    proposer = config.propose.proposer
    if proposer.kind == "model" and proposer.model is not None:
        check_model_path(proposer.model.path, "propose.proposer.model.path")
        _check_adapter(proposer.model.adapter, "propose.proposer.model.adapter")
    load_tokenizer(policy, field)


def _check_adapter(adapter: str | None, field: str) -> None:
    if adapter is not None and not Path(adapter).expanduser().is_dir():
        raise ConfigError(f"{field}: adapter folder {adapter} does not exist")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "config":
            sys.stdout.write(to_yaml(load_config(args.config, args.overrides)))
            return 0
        if args.command == "show":  # reads a run's records; no config, no lock
            from rich.console import Console

            from intrain.show import show

            show(Path(args.run_dir), args.problem, Console(highlight=False))  # stdout: the view is the output
            return 0
        if args.command == "report":  # reads a run; writes only its own two files, so takes no lock
            return _report(args)
        if args.command == "runs":
            from rich.console import Console

            from intrain.runs import list_runs

            # Piped or redirected, rich would fold the table to 80 columns; a wide one stays greppable.
            list_runs(Path(args.dir), Console(highlight=False, width=None if sys.stdout.isatty() else 200))
            return 0
        config = load_config("demo" if args.command == "demo" else args.config, args.overrides)
        _check_models(args, config)
        return _run_locked(args, config)
    except KeyboardInterrupt:
        print("interrupted; finished shards are kept, re-run to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("INTRAIN_DEBUG"):
            raise
        message = _known_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _run_locked(args: argparse.Namespace, config: Config) -> int:
    """Dispatch while holding the run directory's lock (released on any exit, and by the OS on a kill)."""
    from intrain.stages.common import RunContext
    from intrain.store import lock_run_dir
    from intrain.training.args import is_main_process

    run_dir, field = _run_dir(args, config)
    # Under `accelerate launch` / torchrun every rank runs this command on the same run directory;
    # rank 0 holds the lock for the whole launch.
    lock = lock_run_dir(run_dir, field) if is_main_process() else contextlib.nullcontext()
    with lock:
        ctx = RunContext(config=config, run_dir=run_dir, force=args.force)
        try:
            return _dispatch(args, ctx)
        finally:
            ctx.close()


def _known_errors() -> tuple[type[BaseException], ...]:
    from intrain.data import DataError
    from intrain.store import RunDirError, StageConfigChanged

    return (ConfigError, DataError, StageConfigChanged, RunDirError, FileNotFoundError)


def _known_error_message(exc: BaseException) -> str | None:
    """The one line to print for a failure the user can fix, or None for a bug (traceback)."""
    from intrain.store import STORAGE_ERRNOS

    if isinstance(exc, _known_errors()):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        where = exc.filename or "the run directory"
        fix = "make the disk writable" if exc.errno == errno.EROFS else "free some space"
        return f"cannot write {where}: {exc.strerror}; finished shards are kept, {fix} and re-run to resume"
    return None


def _dispatch(args: argparse.Namespace, ctx) -> int:
    from intrain import pipeline

    if args.command in ("sample", "propose", "filter", "sft", "rl"):
        from importlib import import_module

        stage = import_module(f"intrain.stages.{args.command}").run(ctx)
        print(f"{args.command}: {stage.manifest()['counts']} -> {stage.path}")
    elif args.command == "eval":
        from intrain.stages import evaluate

        label = args.label or (Path(args.model).name if args.model else "base")
        stage = evaluate.run(ctx, label=label, model_path=args.model)
        sys.stdout.write((stage.path / "eval.md").read_text())
    elif args.command == "compare":
        from intrain import compare

        compare.run(ctx, args.arms or list(ctx.config.compare.arms))
    elif args.command == "warmup":
        from intrain import warmup

        report = warmup.run(ctx)
        print(
            json.dumps(
                {
                    k: report[k]
                    for k in (
                        "adapter",
                        "train_rows",
                        "heldout",
                        "proposer_before",
                        "proposer_after",
                        "solve",
                        "timings",
                    )
                },
                indent=2,
                default=str,
            )
        )
    elif args.command == "eval-proposer":
        from intrain import proposer_eval

        proposer_eval.run(ctx, args.labels, args.limit)
    elif args.command == "lab":
        from intrain.lab import filter_precision, hard_split, pretrain, table1

        if args.table == "pretrain":
            pretrain.run(ctx.config, ctx.run_dir)
        elif args.table == "hard-split":
            hard_split.run(ctx)
        else:
            (table1 if args.table == "table1" else filter_precision).run(ctx)
    elif args.command in ("run", "demo"):
        pipeline.run(ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

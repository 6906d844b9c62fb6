"""Run intrain stages the way the CLI does, in processes that test_crash_safety.py SIGKILLs.

    python crash_driver.py serve
    python crash_driver.py [--parity-grader] STAGE CONFIG [--run-dir RUN] [--force]

STAGE is a CLI stage (sample, eval, propose, filter, sft, rl), handed to `intrain.cli.main`
unchanged, or `reflect`, which has no subcommand of its own (`intrain compare` runs it for the
sft_reflection arm) and is run here exactly as `cli._run_locked` runs a stage: under the run
directory's lock, in a RunContext that is closed on the way out.

`serve` is what the test uses: a fork server. It imports torch, transformers, TRL and every
stage once, then reads one JSON request per line on stdin ({"argv": [...], "parity": bool,
"log": path, "die_at": "module:function" or null}) and runs each in a forked child, answering
{"pid": N} at once and {"pid": N, "exit": code, "seconds": s} when the child is gone (exit is -9
for a SIGKILL).
Why fork: a fresh interpreter spends ~8 s importing torch/transformers/Qwen3 on this machine,
more than any tiny stage's work; the crash test runs dozens of stage processes, and a fork
starts in milliseconds. The child is still a separate process running `intrain.cli.main`, with
its own run-directory lock, grading pool and files, and it dies by SIGKILL like any other.
The server stays single-threaded and never touches a run directory, so a fork is safe (the
test starts it with ARROW_DEFAULT_MEMORY_POOL=system, or pyarrow's jemalloc would leave a
background thread behind at import).

A request's "die_at" replaces that function (as the module that calls it sees it) with a SIGKILL
of the child: a kill at one exact moment, for windows too short for a random delay to hit reliably.

`--parity-grader` (a request's "parity") replaces math-verify's verdict with "correct when the
text length is even", in that process only. A random tiny model never writes a boxed answer, so
with the real grader every GRPO reward is 0 and every advantage 0 (a resumed RL run would match an
uninterrupted one trivially), and the filter never keeps a row (SFT would have nothing to train
on). With parity verdicts the weights move and the filter keeps some rows, as in test_rl.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def parity_grade(self, completions, golds):
    """Grader.grade stand-in: correct when the completion's length is even (no worker involved)."""
    from intrain.grading import Verdict

    return [
        Verdict(correct=len(c) % 2 == 0, reason="correct" if len(c) % 2 == 0 else "wrong", extracted=None)
        for c in completions
    ]


def preload() -> None:
    """What the stages import anyway (seconds of it), so a forked run starts at the stage's work."""
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import transformers.models.qwen3.modeling_qwen3
    import trl

    # TRL and transformers import lazily: touching the trainers imports their modules now.
    _ = (trl.SFTTrainer, trl.GRPOTrainer, trl.SFTConfig, trl.GRPOConfig, transformers.AutoModelForCausalLM)

    import intrain.cli
    import intrain.engines.hf
    import intrain.training.grpo
    import intrain.training.sft  # noqa: F401
    from intrain.stages import evaluate, filter, propose, reflect, rl, sample, sft  # noqa: F401


def die_at(target: str) -> None:
    """Make `module:function` SIGKILL this process when called: a kill at one exact moment."""
    import importlib

    module, name = target.split(":")
    setattr(importlib.import_module(module), name, lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL))


def run_stage(argv: list[str], parity: bool, die: str | None = None) -> int:
    """One stage, as `intrain <argv>` would run it (`reflect`: as the CLI would if it had the subcommand)."""
    import intrain.cli

    if die is not None:
        die_at(die)
    if parity:
        from intrain.grading import Grader

        Grader.grade = parity_grade  # type: ignore[method-assign]
    if argv[0] == "reflect":
        return run_reflect(argv[1], argv[2:])
    return intrain.cli.main(argv)


def run_reflect(config_path: str, options: list[str]) -> int:
    import argparse

    from intrain.config import load_config
    from intrain.stages import reflect
    from intrain.stages.common import RunContext
    from intrain.store import lock_run_dir

    parser = argparse.ArgumentParser(prog="crash_driver.py reflect")
    parser.add_argument("--run-dir")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(options)
    config = load_config(config_path, [])
    run_dir = Path(args.run_dir or config.output.run_dir)
    with lock_run_dir(run_dir):
        ctx = RunContext(config=config, run_dir=run_dir, force=args.force)
        try:
            stage = reflect.run(ctx)
        finally:
            ctx.close()
    print(f"reflect: {stage.manifest()['counts']} -> {stage.path}")
    return 0


def serve() -> None:
    preload()
    reply({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child(request)  # never returns
        reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        reply({"pid": pid, "exit": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - started})


def child(request: dict) -> None:
    """The forked run: its own process group (the test looks for grading workers it leaves behind),
    output to the request's log file, and an exit code like the CLI's."""
    code = 1
    try:
        os.setpgid(0, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        code = run_stage(request["argv"], request.get("parity", False), request.get("die_at"))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if argv == ["serve"]:
        serve()
        return 0
    parity = "--parity-grader" in argv
    return run_stage([a for a in argv if a != "--parity-grader"], parity)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

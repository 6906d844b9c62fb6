"""Crash safety: every stage, SIGKILLed at random moments and re-run, ends as an uninterrupted run.

For each stage (sample, eval, propose, filter, reflect, sft, rl) an uninterrupted reference run is
timed first. Then the stage is started in a fresh run directory holding only its upstream stages
(copied from the reference), SIGKILLed at a seeded random moment, restarted and killed again (a
chain of three kills), and finally run to completion. Its folder must then hold what the
reference's holds: byte-identical shards and reports, no shard lost or extra, no row twice, equal
manifest counts, and for SFT and RL the same weights (within 1e-5; the weights did move), the same
per-step log (every step once) and no checkpoints left, and no temporary file of an interrupted
write is left anywhere in it (the re-run's store removes them once it holds the run directory).
After every kill: the run directory's lock is free (flock dies with its process), no grading worker
outlives the killed run, the manifest parses, and every shard on disk is a whole Parquet file of the
stage's schema.

Where kills land: the first kill of a stage at a random moment of its set-up (config, upstream
reads, model load, grading pool, first unit), the others at a random moment of the work after the
run's own first new shard or checkpoint: inside a randomly picked unit still to do.
So kills land inside shards, between them, inside training steps and checkpoint saves, and in a
stage's closing work (saving the model, the manifest, pruning), not only at checkpoint boundaries.
A kill that comes after the run finished ends its chain; chains repeat until three kills have
landed while the stage was unfinished. The random draws are seeded per stage (where a kill lands
still depends on the machine's speed; the printed kill log says where each one did).

Runs go through crash_driver.py's fork server: each run is a forked process calling
`intrain.cli.main` (reflect, which has no subcommand, the way the CLI would run it), spared the
~8 s of imports a fresh interpreter pays. Inputs: config A samples and evaluates the tiny random
model; config B starts from a sample stage of faulty arithmetic attempts written here (the random
model's own failures hold no error the arithmetic ground truth can locate), so the oracle proposer
has errors to name, the filter continues real interventions, and SFT trains on the rows the
filter keeps under the parity grader (see crash_driver.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from intrain import fingerprints
from intrain.config import load_config
from intrain.data import load_problems
from intrain.grading import extract_boxed
from intrain.records import FilterResult, Proposal, Record, Reflection, Rollout, SFTExample
from intrain.store import LOCK_NAME, MANIFEST_NAME, TEMPORARY_SUFFIX, Stage, lock_run_dir
from intrain.training.checkpoints import last_complete_checkpoint
from intrain.truth.oracle import make_faulty_attempt

DRIVER = Path(__file__).with_name("crash_driver.py")
KILLS = 3  # kills per stage that must land while the stage is unfinished
KILLS_PER_CHAIN = 3  # kills before a chain's final, uninterrupted re-run
MAX_CHAINS = 6  # more would mean most kills come too late: the delays no longer fit the work
WEIGHT_TOLERANCE = 1e-5  # bitwise equal on CPU in practice (as in test_sft_resume.py / test_rl.py)
RUN_TIMEOUT_S = 300


# ----------------------------------------------------------------------------- the fork server


@dataclass(frozen=True)
class Ended:
    exit: int  # the process's exit status; -9 when SIGKILLed
    seconds: float


class ForkServer:
    """crash_driver.py serve: runs each request in a forked process and reports its pid and exit."""

    def __init__(self, log: Path) -> None:
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",  # 2 shared cores; and one thread keeps float sums in one order
            "TOKENIZERS_PARALLELISM": "false",
            "ARROW_DEFAULT_MEMORY_POOL": "system",  # jemalloc starts a thread at import; the server forks
        }
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._buffer = b""
        self._running: int | None = None  # the pid of the run in progress, killed if the tests stop early
        assert self._read(timeout=180) == {"ready": True}, f"fork server did not start; see {log}"

    def _read(self, timeout: float) -> dict | None:
        """The server's next message, or None if none comes within `timeout` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.startswith(b"{"):  # anything else is a library talking on stdout at import
                    return json.loads(line)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("the fork server died")
            self._buffer += chunk

    def start(self, argv: list[str], log: Path, parity: bool, die_at: str | None = None) -> int:
        assert self.proc.stdin is not None
        request = {"argv": argv, "log": str(log), "parity": parity, "die_at": die_at}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        message = self._read(timeout=60)
        assert message is not None and "pid" in message, message
        self._running = message["pid"]
        return message["pid"]

    def wait(self, pid: int, timeout: float) -> Ended | None:
        """How run `pid` ended, or None while it still runs after `timeout` seconds."""
        message = self._read(timeout)
        if message is None:
            return None
        assert message["pid"] == pid, message
        self._running = None
        return Ended(message["exit"], message["seconds"])

    def close(self) -> None:
        if self._running is not None:  # a test failed while a run was going: it leads its process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._running, signal.SIGKILL)
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the server's loop ends at EOF
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fork_server = ForkServer(tmp_path_factory.mktemp("fork-server") / "server.log")
    yield fork_server
    fork_server.close()


# ----------------------------------------------------------------------------- stages and configs


@dataclass(frozen=True)
class Spec:
    name: str  # the driver's stage argument
    folder: str  # the stage folder it writes
    config: str  # "a" or "b", see config_sections
    upstream: tuple[str, ...]  # finished stage folders it reads, copied from the reference run
    record: type[Record] | None  # the record of its shards; None for the training stages
    key: tuple[str, ...] = ()  # the columns that name a row (no row may appear twice)
    parity: bool = False  # parity verdicts instead of math-verify (crash_driver.py)

    @property
    def training(self) -> bool:
        return self.record is None


SPECS = [
    Spec("sample", "sample", "a", (), Rollout, ("problem_id", "sample_index")),
    Spec("eval", "eval-base", "a", (), Rollout, ("problem_id", "sample_index")),
    Spec("propose", "propose", "b", ("sample",), Proposal, ("attempt_id", "proposal_index")),
    Spec("filter", "filter", "b", ("sample", "propose"), FilterResult, ("attempt_id", "proposal_index"), parity=True),
    Spec("reflect", "reflect", "b", ("sample",), Reflection, ("attempt_id",)),
    Spec("sft", "sft", "b", ("sample", "propose", "filter"), None),
    Spec("rl", "rl", "b", (), None, parity=True),
]
BY_NAME = {spec.name: spec for spec in SPECS}
PRODUCERS = {(spec.config, spec.folder): spec for spec in SPECS}


def config_sections(name: str, model_dir: str) -> dict:
    """Config A: sample and eval of the tiny model. Config B: the stages after sample, and RL.
    Every shard holds one problem or attempt, so a stage writes 6-12 shards and kills land between
    them; SFT (12 steps) and RL (6 steps) checkpoint every second step, so some kills lose a step
    that the re-run redoes (and RL's step log must drop its line)."""
    common = {
        "model": {"path": model_dir, "device": "cpu", "batch_size": 8},
        "grading": {"workers": 1},
        "output": {"run_dir": "unused (every run passes --run-dir)"},
    }
    prompt = "{problem}\nPut your final answer within \\boxed{}."
    if name == "a":
        return {
            **common,
            "data": {
                "train": {"kind": "arithmetic", "size": 8, "seed": 3},
                "eval": {"kind": "arithmetic", "size": 6, "seed": 4},
                "prompt_template": prompt,
            },
            "sample": {"n": 2, "max_tokens": 24, "shard_size": 1},
            "eval": {"n": 2, "ks": [1, 2], "max_tokens": 24, "shard_size": 1},
        }
    return {
        **common,
        "data": {"train": {"kind": "arithmetic", "size": 12, "seed": 5}, "prompt_template": prompt},
        "sample": {"max_tokens": 24},  # reflect's length budget
        "propose": {"proposer": {"kind": "oracle"}, "n": 1, "shard_size": 1},
        "filter": {"n": 4, "wave_size": 2, "max_tokens": 16, "shard_size": 1},
        "sft": {
            "effective_batch_size": 2,
            "per_device_batch_size": 2,
            "epochs": 2,
            "save_steps": 2,
            "learning_rate": 1e-3,
            "max_length": 512,
        },
        "rl": {
            "steps": 6,
            "group_size": 2,
            "prompts_per_step": 2,
            "max_completion_tokens": 8,
            "save_steps": 2,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
        },
    }


def write_faulty_sample_stage(config_path: Path, run_dir: Path) -> None:
    """A finished `sample` stage of one faulty attempt per problem (each with a known first error),
    under the fingerprint `intrain sample` would give it, so later stages accept it as theirs."""
    config = load_config(config_path)
    problems, _ = load_problems(config.data.train, config.data.on_invalid)
    rng = random.Random(0)
    rollouts = []
    for problem in problems:
        attempt, _, _ = make_faulty_attempt(problem, rng)
        rollouts.append(
            Rollout(
                problem_id=problem.id,
                source=problem.source,
                problem=problem.problem,
                answer=problem.answer,
                reference_solution=problem.reference_solution,
                sample_index=0,
                completion=attempt,
                completion_tokens=len(attempt) // 3,
                prompt_tokens=32,
                finish_reason="stop",
                correct=False,
                reason="wrong",
                extracted=extract_boxed(attempt),
            )
        )
    stage = Stage(run_dir, "sample", fingerprints.fingerprint(fingerprints.SAMPLE, config, run_dir))
    stage.write_records(0, rollouts, Rollout)
    stage.finish({"problems": len(problems), "rollouts": len(rollouts), "failed": len(rollouts)})


@pytest.fixture(scope="module")
def configs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("crash-configs")
    paths = {}
    for name in ("a", "b"):
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config_sections(name, tiny_model_dir)))
    return paths


# ----------------------------------------------------------------------------- runs


def command(spec: Spec, configs: dict[str, Path], run_dir: Path) -> list[str]:
    return [spec.name, str(configs[spec.config]), "--run-dir", str(run_dir)]


def manifest(stage_dir: Path) -> dict | None:
    path = stage_dir / MANIFEST_NAME
    return json.loads(path.read_text()) if path.exists() else None


def complete(stage_dir: Path) -> bool:
    return (manifest(stage_dir) or {}).get("status") == "complete"


def units_done(spec: Spec, stage_dir: Path) -> int:
    """Work on disk: whole shards, or for SFT/RL the step of the newest complete checkpoint."""
    if spec.training:
        checkpoint = last_complete_checkpoint(stage_dir / "checkpoints")
        return int(checkpoint.name.removeprefix("checkpoint-")) if checkpoint else 0
    return len(list(stage_dir.glob("shard-*.parquet")))


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


@dataclass(frozen=True)
class Reference:
    run_dir: Path
    seconds: float  # fork to exit of the uninterrupted run
    first_unit_s: float  # fork to the first shard / checkpoint on disk: set-up and the first unit(s)
    first_units: int  # units on disk at that moment (a checkpoint holds `save_steps` steps)
    units: int  # shards, or training steps

    @property
    def per_unit_s(self) -> float:
        """Seconds per shard or step after the first unit (the stage's closing work spread over them)."""
        return (self.seconds - self.first_unit_s) / max(1, self.units - self.first_units)


class References:
    """Uninterrupted runs, each made (and timed) when a test first needs it, after its upstream stages:
    one run directory per config, config B's starting from the faulty-attempt sample stage."""

    def __init__(self, server: ForkServer, configs: dict[str, Path], root: Path) -> None:
        self.server, self.configs, self.root = server, configs, root
        self.run_dirs = {name: root / name for name in configs}
        write_faulty_sample_stage(configs["b"], self.run_dirs["b"])
        self._done: dict[str, Reference] = {}

    def __getitem__(self, name: str) -> Reference:
        if name not in self._done:
            spec = BY_NAME[name]
            for folder in spec.upstream:
                producer = PRODUCERS.get((spec.config, folder))  # None: config B's written sample stage
                if producer is not None:
                    self[producer.name]
            self._done[name] = self._run(spec)
        return self._done[name]

    def _run(self, spec: Spec) -> Reference:
        run_dir = self.run_dirs[spec.config]
        stage_dir = run_dir / spec.folder
        log = self.root / f"{spec.name}.log"
        pid = self.server.start(command(spec, self.configs, run_dir), log, spec.parity)
        first_unit_s, first_units = None, 0
        started = time.monotonic()
        while (ended := self.server.wait(pid, timeout=0.02)) is None:
            if first_unit_s is None and (first_units := units_done(spec, stage_dir)) > 0:
                first_unit_s = time.monotonic() - started
            assert time.monotonic() - started < RUN_TIMEOUT_S, f"{spec.name}: the reference run hangs"
        assert ended.exit == 0, tail(log)
        finished = manifest(stage_dir)
        assert finished is not None and finished["status"] == "complete"
        units = finished["counts"]["steps"] if spec.training else finished["shards"]
        assert units >= 4, f"{spec.name}: {units} units of work leave kills no room to land mid-stage"
        if first_unit_s is None:  # pragma: no cover - the poll missed every unit: a very fast stage
            first_unit_s, first_units = ended.seconds, units
        return Reference(run_dir, ended.seconds, first_unit_s, max(1, first_units), units)


@pytest.fixture(scope="module")
def references(server, configs, tmp_path_factory) -> References:
    return References(server, configs, tmp_path_factory.mktemp("crash-reference"))


def run_and_kill(
    server: ForkServer, spec: Spec, argv: list[str], ref: Reference, stage_dir: Path, log: Path, u: float, setup: bool
) -> tuple[int, Ended | None]:
    """Start the stage and SIGKILL it at a random moment (`u` in [0, 1) picks it); returns its pid and,
    when it finished before the kill came, how it ended.

    `setup`: a moment before the reference had its first unit on disk (config, upstream reads, model
    load, grading pool, the first shard or steps). Otherwise a moment in the work after this run's own
    first new unit: `u` picks one of the units still to do, and a moment inside it, as a fraction of
    the time this run's previous unit took. The last unit to do includes the closing work (reading
    shards back, saving the model, the manifest, pruning). Anchoring on the run's own progress rather
    than on clock estimates matters: set-up time varies by seconds on a shared machine, and one tiny
    shard can take several times as long as the next (generation lengths differ), far more than a
    reference's average per unit could absorb.
    """
    pid = server.start(argv, log, spec.parity)
    if setup:
        ended = server.wait(pid, timeout=(0.05 + 0.95 * u) * ref.first_unit_s)
    else:
        ended = kill_moment_in_work(server, pid, spec, ref, stage_dir, u)
    if ended is not None:
        return pid, ended
    with contextlib.suppress(ProcessLookupError):  # it may have exited since the wait
        os.kill(pid, signal.SIGKILL)
    ended = server.wait(pid, timeout=60)
    assert ended is not None, f"{spec.name}: pid {pid} survived SIGKILL"
    assert ended.exit in (0, -signal.SIGKILL), tail(log)
    return pid, None if ended.exit == -signal.SIGKILL else ended


def kill_moment_in_work(
    server: ForkServer, pid: int, spec: Spec, ref: Reference, stage_dir: Path, u: float
) -> Ended | None:
    """Wait, while run `pid` works, until the moment `u` picks (see run_and_kill); returns how the run
    ended if it finished first."""
    step = ref.first_units if spec.training else 1  # units one shard or checkpoint adds
    changes = [(time.monotonic(), units_done(spec, stage_dir))]  # when the units on disk last grew

    def wait_for_units(target: int) -> Ended | None:
        while (ended := server.wait(pid, timeout=0.01)) is None and changes[-1][1] < target:
            assert time.monotonic() - changes[0][0] < RUN_TIMEOUT_S, f"{spec.name}: a re-run makes no progress"
            if (done := units_done(spec, stage_dir)) > changes[-1][1]:
                changes.append((time.monotonic(), done))
        return ended

    if (ended := wait_for_units(changes[0][1] + 1)) is not None:
        return ended
    anchor = changes[-1][1]
    slots = max(1, (ref.units - anchor + step - 1) // step)  # units still to do, the closing work in the last
    pick = u * slots
    if (ended := wait_for_units(anchor + int(pick) * step)) is not None:
        return ended
    # The previous unit's time; the anchor's own includes this run's set-up, so the reference's
    # average stands in for it.
    previous = changes[-1][0] - changes[-2][0] if len(changes) > 2 else ref.per_unit_s * step
    return server.wait(pid, timeout=(pick - int(pick)) * previous)


# ----------------------------------------------------------------------------- checks after a kill


def assert_no_orphans(pid: int) -> None:
    """The killed run led its own process group; its grading workers must see the pipe close and exit."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    pytest.fail(f"processes of the killed run (process group {pid}) were still alive 20 s after the kill")


def assert_lock_free(run_dir: Path) -> None:
    """RUN/.lock can be flocked: the killed run's lock died with it (lock_run_dir itself would also sweep
    the temporary files the kill left, which the re-run must do)."""
    if not (run_dir / LOCK_NAME).exists():
        return  # killed before it opened the lock file
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: every re-run would be refused
    finally:
        os.close(fd)


def assert_resumable_state(spec: Spec, run_dir: Path) -> None:
    """What a kill may leave: a free lock, a parseable manifest, only whole shards of the stage's schema."""
    assert_lock_free(run_dir)
    stage_dir = run_dir / spec.folder
    if not stage_dir.exists():
        return  # killed before the stage opened its folder
    manifest(stage_dir)  # atomic writes: never a torn manifest
    record = spec.record or SFTExample
    for shard in stage_dir.glob("shard-*.parquet"):
        table = pq.read_table(shard)  # a torn file raises here
        assert table.schema.equals(record.schema()), shard


def where(spec: Spec, stage_dir: Path) -> str:
    """Where a kill landed, for the kill log."""
    if not stage_dir.exists():
        return "before the stage folder existed"
    if complete(stage_dir):
        return "after the manifest said complete"
    done = units_done(spec, stage_dir)
    unit = "steps checkpointed" if spec.training else "shards"
    extra = temporaries(stage_dir)
    if spec.training and (stage_dir / "checkpoints").exists():
        extra += sorted(p.name for p in (stage_dir / "checkpoints").glob("checkpoint-*"))
    if spec.training and (stage_dir / "model").exists():
        extra.append("model/")
    return f"{done} {unit} on disk" + (f" ({', '.join(extra)})" if extra else "")


# ----------------------------------------------------------------------------- final comparison


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_temporary(path: Path) -> bool:
    # What store.atomic_write_bytes leaves when killed between mkstemp and rename.
    return path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX)


def temporaries(stage_dir: Path) -> list[str]:
    return sorted(p.name for p in stage_dir.rglob("*") if is_temporary(p))


def stage_files(stage_dir: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(stage_dir)): p
        for p in sorted(stage_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not is_temporary(p)
    }


def assert_same_counts(got: dict, want: dict, ignore: tuple[str, ...] = ()) -> None:
    assert got["status"] == want["status"] == "complete"
    ours = {k: v for k, v in got["counts"].items() if k not in ignore}
    theirs = {k: v for k, v in want["counts"].items() if k not in ignore}
    assert ours == pytest.approx(theirs, abs=1e-5)


def assert_same_shard_stage(spec: Spec, got: Path, want: Path) -> None:
    got_files, want_files = stage_files(got), stage_files(want)
    assert sorted(got_files) == sorted(want_files)  # no shard lost, none extra
    for name in want_files:  # shards, and eval.json / eval.md: byte for byte
        assert digest(got_files[name]) == digest(want_files[name]), name
    got_manifest, want_manifest = manifest(got), manifest(want)
    assert got_manifest is not None and want_manifest is not None
    assert_same_counts(got_manifest, want_manifest)
    assert got_manifest["shards"] == want_manifest["shards"]
    # No row twice (byte-equal shards imply it only if the reference itself has no duplicate).
    keys = [
        tuple(row.values())
        for path in got_files.values()
        if path.suffix == ".parquet"
        for row in pq.read_table(path).select(list(spec.key)).to_pylist()
    ]
    assert keys and len(keys) == len(set(keys))


def load_weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_training_stage(spec: Spec, got: Path, want: Path, base_model: str) -> None:
    got_manifest, want_manifest = manifest(got), manifest(want)
    assert got_manifest is not None and want_manifest is not None
    # How far the last re-run had to go back differs by nature; everything else is the run's result.
    assert_same_counts(got_manifest, want_manifest, ignore=("resumed_from_step",))
    got_model, want_model = Path(got_manifest["model"]), Path(want_manifest["model"])
    assert got_model == got / "model"
    ours, theirs, base = load_weights(got_model), load_weights(want_model), load_weights(Path(base_model))
    assert ours.keys() == theirs.keys() == base.keys()
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max().item() <= WEIGHT_TOLERANCE, name
    assert any(not theirs[name].equal(base[name]) for name in base)  # training moved the weights
    for name in ("tokenizer.json", "config.json"):
        assert digest(got_model / name) == digest(want_model / name), name
    if spec.name == "sft":
        assert digest(got / "shard-00000.parquet") == digest(want / "shard-00000.parquet")
        ours_log = [e for e in jsonl(got / "train_log.jsonl") if "loss" in e]
        theirs_log = [e for e in jsonl(want / "train_log.jsonl") if "loss" in e]
        steps = list(range(1, len(theirs_log) + 1))
        assert [e["step"] for e in ours_log] == [e["step"] for e in theirs_log] == steps  # each step once
        assert [e["loss"] for e in ours_log] == pytest.approx([e["loss"] for e in theirs_log], abs=1e-5)
    else:
        ours_log, theirs_log = jsonl(got / "log.jsonl"), jsonl(want / "log.jsonl")
        steps = list(range(1, len(theirs_log) + 1))
        assert [r["step"] for r in ours_log] == [r["step"] for r in theirs_log] == steps  # each step once
        assert [r["groups"] for r in ours_log] == [r["groups"] for r in theirs_log]  # the same rollouts' rewards
        for key in ("reward", "loss", "grad_norm", "learning_rate", "entropy"):
            assert [r.get(key) for r in ours_log] == pytest.approx([r.get(key) for r in theirs_log], abs=1e-5), key
    # A completed stage keeps its model, not its resume points (output.keep_checkpoints: 0), also when
    # a kill cut its pruning short: the re-run of a complete stage prunes.
    assert not (got / "checkpoints").exists()


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(
    spec, server, configs, references, tiny_model_dir, tmp_path
):
    ref = references[spec.name]
    rng = random.Random(f"crash-safety-{spec.name}")  # str seeds hash the same in every process
    kill_log: list[str] = []
    landed = 0  # kills of a running process while the stage was unfinished
    chains = 0
    while landed < KILLS:
        chains += 1
        assert chains <= MAX_CHAINS, f"{spec.name}: only {landed} of {KILLS} kills landed mid-stage: {kill_log}"
        run_dir = tmp_path / f"chain-{chains}"
        for name in spec.upstream:
            shutil.copytree(ref.run_dir / name, run_dir / name)
        stage_dir = run_dir / spec.folder
        argv = command(spec, configs, run_dir)
        log = tmp_path / f"chain-{chains}.log"
        for kill in range(KILLS_PER_CHAIN):
            u = rng.random()  # drawn whatever happens below, so the draws do not depend on timing
            setup = chains == 1 and kill == 0  # one kill in the set-up, the others in the work
            pid, ended = run_and_kill(server, spec, argv, ref, stage_dir, log, u, setup)
            if ended is not None:  # it finished before the kill came: nothing left to interrupt
                assert ended.exit == 0, tail(log)
                kill_log.append(f"chain {chains}: u={u:.2f} came after the run finished")
                break
            assert_no_orphans(pid)
            assert_resumable_state(spec, run_dir)
            kill_log.append(f"chain {chains}: u={u:.2f} {'set-up' if setup else 'work'} kill, {where(spec, stage_dir)}")
            if complete(stage_dir):
                break
            landed += 1
        # The re-run that finishes the stage: it must accept whatever the kills left.
        pid = server.start(argv, log, spec.parity)
        ended = server.wait(pid, timeout=RUN_TIMEOUT_S)
        assert ended is not None and ended.exit == 0, tail(log)
        # Nothing half-written stays behind: the re-run removed what the kills left of atomic writes.
        assert temporaries(stage_dir) == []
        want = ref.run_dir / spec.folder
        if spec.training:
            assert_same_training_stage(spec, stage_dir, want, tiny_model_dir)
        else:
            assert_same_shard_stage(spec, stage_dir, want)
    assert (tmp_path / "chain-1" / LOCK_NAME).exists()  # the lock file stays; only its flock went
    print(f"\n{spec.name} kill log:\n  " + "\n  ".join(kill_log))


@pytest.mark.parametrize("name", ["sft", "rl"])
def test_killed_while_pruning_checkpoints_is_pruned_on_rerun(name, server, configs, references, tmp_path):
    spec = BY_NAME[name]
    ref = references[name]
    run_dir = tmp_path / "run"
    for folder in spec.upstream:
        shutil.copytree(ref.run_dir / folder, run_dir / folder)
    stage_dir = run_dir / spec.folder
    argv = command(spec, configs, run_dir)
    log = tmp_path / "run.log"
    # SIGKILL at the moment the stage calls prune_checkpoints: its manifest already says complete.
    pid = server.start(argv, log, spec.parity, die_at=f"intrain.stages.{name}:prune_checkpoints")
    ended = server.wait(pid, timeout=RUN_TIMEOUT_S)
    assert ended is not None and ended.exit == -signal.SIGKILL, tail(log)
    assert complete(stage_dir) and last_complete_checkpoint(stage_dir / "checkpoints") is not None
    pid = server.start(argv, log, spec.parity)
    ended = server.wait(pid, timeout=RUN_TIMEOUT_S)
    assert ended is not None and ended.exit == 0, tail(log)
    assert not (stage_dir / "checkpoints").exists()


def test_lock_holder_removes_interrupted_writes_only_as_the_only_process(tmp_path, monkeypatch):
    """What the re-runs above rely on, at the edges: only atomic_write_bytes' own leftovers go, and none
    while other ranks of a launch (which write without the lock) may have a write in flight."""
    run_dir = tmp_path / "run"
    ours = [
        run_dir / f".compare.json.k2j4h5g6{TEMPORARY_SUFFIX}",
        run_dir / "sample" / f".shard-00003.parquet.a1b2c3d4{TEMPORARY_SUFFIX}",
    ]
    kept = [
        run_dir / "sample" / "shard-00000.parquet",
        run_dir / "sample" / ".notes.tmp",
        run_dir / "sft" / "checkpoints" / f".x.abcdefgh{TEMPORARY_SUFFIX}",
    ]
    for path in ours + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with lock_run_dir(run_dir):  # rank 0 of a two-process launch
        pass
    assert all(path.exists() for path in ours + kept)
    monkeypatch.delenv("WORLD_SIZE")
    with lock_run_dir(run_dir):
        pass
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in kept)  # not ours, or deeper than stage folders (Trainer's own)

"""A run is a directory; each stage owns a sub-folder of Parquet shards and a manifest.

Resume is shard-granular: a shard file exists only once it is complete (written to a temporary
name, then renamed), so a crash loses at most the shard in flight; the temporary file it leaves is
removed by the next command that holds the run directory alone. A stage's manifest records the
fingerprint of the config that produced it; reopening with a different fingerprint refuses unless
forced, because mixing shards from two configs would silently corrupt a run. A stage folder that
holds nothing yet (a run that failed before its first shard) is restarted instead of refused.

One intrain process at a time works in a run directory: `lock_run_dir` holds an exclusive lock on
RUN/.lock for the whole command.

RUN/metrics.jsonl is the run's metrics in one place, append-only: a line per finished stage (its counts
and timings, as in its manifest) and per RL step (written by training/grpo.py). A refused stage leaves
RUN/.refused/<stage>.json until the stage is next opened under its own config or redone (`intrain runs`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from intrain.records import Record

R = TypeVar("R", bound=Record)

SHARD_PATTERN = "shard-{:05d}.parquet"
_VERSIONED = ("intrain", "torch", "transformers", "trl", "peft", "datasets", "math-verify", "vllm")


LOCK_NAME = ".lock"
# The end of every temporary file name of atomic_write_bytes: what marks a leftover as ours to delete.
TEMPORARY_SUFFIX = ".intrain.tmp"
MANIFEST_NAME = "manifest.json"
METRICS_NAME = "metrics.jsonl"
REFUSED_DIR = ".refused"
# Errors of a full or read-only disk: the user frees space and re-runs; finished shards are kept.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class StageConfigChanged(RuntimeError):
    """The stage folder was produced by another config."""


class RunDirError(RuntimeError):
    """The run directory cannot be used (not creatable, not writable, or in use)."""


class RunDirInUse(RunDirError):
    """Another intrain process holds the run directory's lock."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # A failed write or fsync names no file; the user needs to know which one did not happen.
        if exc.filename is None:
            exc.filename = str(path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


class Stage:
    """One stage's folder inside a run."""

    def __init__(self, run_dir: Path, name: str, config_hash: str, force: bool = False):
        self.name = name
        self.path = Path(run_dir) / name
        self.config_hash = config_hash
        self._started = time.time()
        manifest = self.manifest()
        refusal = Path(run_dir) / REFUSED_DIR / f"{name}.json"
        if manifest is not None and manifest.get("config_hash") != config_hash:
            if not force and self._holds_output(manifest):
                _record_refusal(refusal, name, manifest.get("config_hash"), config_hash)
                raise StageConfigChanged(
                    f"stage '{name}' in {self.path} was produced with a different config "
                    f"({manifest.get('config_hash')} != {config_hash}); use --force to redo it"
                )
            # Forced, or nothing was produced under the old config (a run that failed before its
            # first shard): restarting loses nothing, and refusing would block the corrected run.
            shutil.rmtree(self.path)
            manifest = None
        if manifest is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_manifest({"status": "running", "counts": {}, "timings": {}})
        with contextlib.suppress(OSError):  # a read-only run can still be read
            refusal.unlink(missing_ok=True)  # opened under its own config (or redone): no longer refused

    def _holds_output(self, manifest: dict[str, Any]) -> bool:
        """Whether the folder holds anything a run produced: a complete status, or any file but the
        manifest and interrupted temporary writes (shards, but also an SFT/RL stage's checkpoints
        and logs, which resume would pick up)."""
        if manifest.get("status") == "complete":
            return True
        return any(entry.name != MANIFEST_NAME and not _is_temporary(entry) for entry in self.path.iterdir())

    # -- manifest ---------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text())

    def counts(self) -> dict[str, Any]:
        """The manifest's counts (empty until `finish`); a clear error if the folder has no manifest."""
        manifest = self.manifest()
        if manifest is None:
            raise FileNotFoundError(f"stage '{self.name}' has no manifest in {self.path}")
        return manifest["counts"]

    def _write_manifest(self, fields: dict[str, Any]) -> None:
        current = self.manifest() or {"stage": self.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        current.update(fields)
        current.update(
            config_hash=self.config_hash, versions=library_versions(), updated=time.strftime("%Y-%m-%dT%H:%M:%S")
        )
        atomic_write_json(self.manifest_path, current)

    @property
    def complete(self) -> bool:
        manifest = self.manifest()
        return manifest is not None and manifest.get("status") == "complete"

    def finish(
        self,
        counts: dict[str, Any],
        timings: dict[str, float] | None = None,
        metrics: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """Mark the stage complete with its counts and timings (+ `extra` manifest fields), and append
        counts, timings and `metrics` (numbers for RUN/metrics.jsonl only, e.g. an eval's pass@k) to the
        run's metrics, forwarded to the trackers of `output.report_to`."""
        timings = dict(timings or {})
        timings.setdefault("wall_s", round(time.time() - self._started, 2))
        self._write_manifest(
            {"status": "complete", "counts": counts, "timings": timings, "shards": len(self.shard_paths()), **extra}
        )
        run_dir = self.path.parent
        record = metrics_record(self.name, "finish", {**counts, **timings, **(metrics or {})})
        append_metrics(run_dir, record)
        trackers = metrics_trackers(run_dir)
        if trackers and _is_rank_zero():
            from intrain.report.trackers import forward

            forward(run_dir, trackers, record)

    # -- shards -----------------------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.path / SHARD_PATTERN.format(index)

    def has_shard(self, index: int) -> bool:
        return self.shard_path(index).exists()

    def shard_paths(self) -> list[Path]:
        return sorted(self.path.glob("shard-*.parquet"))

    def write_shard(self, index: int, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
        if schema is not None:
            table = pa.Table.from_pylist(rows, schema=schema)
        else:
            table = pa.Table.from_pylist(rows) if rows else pa.table({})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(self.shard_path(index), sink.getvalue().to_pybytes())

    def write_records(self, index: int, records: Sequence[Record], record: type[Record]) -> None:
        """A shard of typed records; its Parquet schema is the record's, also when the shard is empty."""
        self.write_shard(index, [r.to_row() for r in records], schema=record.schema())

    def read_shard(self, index: int) -> list[dict[str, Any]]:
        return pq.read_table(self.shard_path(index)).to_pylist()

    def rows(self) -> list[dict[str, Any]]:
        return _read_shards(self.path)

    def records(self, record: type[R]) -> list[R]:
        return [record.from_row(row) for row in self.rows()]

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        atomic_write_json(path, obj)
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        atomic_write_text(path, text)
        return path


def _record_refusal(path: Path, stage: str, recorded: str | None, requested: str) -> None:
    # Best effort: the refusal itself is the error the user sees; a read-only run must still get it.
    with contextlib.suppress(OSError):
        at = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic_write_json(path, {"stage": stage, "time": at, "recorded_hash": recorded, "requested_hash": requested})


def refused_stages(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Stages whose last opening was refused (a changed config without --force) and not redone since."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(run_dir) / REFUSED_DIR).glob("*.json")):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            out[path.stem] = json.loads(path.read_text())
    return out


# -- RUN/metrics.jsonl ---------------------------------------------------------------------------------

# output.report_to of each run directory this process works in (RunContext registers it): the stages'
# finish lines and the trainers (TRL's report_to) look it up here, whoever opened the stage.
_TRACKERS: dict[Path, tuple[str, ...]] = {}


def report_metrics_to(run_dir: Path, trackers: Iterable[str]) -> None:
    _TRACKERS[Path(run_dir).resolve()] = tuple(trackers)


def metrics_trackers(run_dir: Path) -> tuple[str, ...]:
    """The trackers (output.report_to) registered for `run_dir`; () when none."""
    return _TRACKERS.get(Path(run_dir).resolve(), ())


def metrics_record(stage: str, event: str, numbers: dict[str, Any], step: int | None = None) -> dict[str, Any]:
    """One metrics.jsonl line: when, which stage, what happened (`finish` or `step`), the step, the numbers."""
    at = time.strftime("%Y-%m-%dT%H:%M:%S")
    return {"time": at, "stage": stage, "event": event, "step": step, "metrics": numbers}


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one line to RUN/metrics.jsonl (rank 0 only: every rank of a launch finishes the same stages).

    A process killed mid-line leaves a line without its newline; the next append starts a fresh line so
    that only the torn one is lost (`read_metrics` skips it)."""
    if not _is_rank_zero():
        return
    path = Path(run_dir) / METRICS_NAME
    line = json.dumps(record, default=str) + "\n"
    with path.open("a+b") as fh:
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The lines of RUN/metrics.jsonl that parse ([] when there is none)."""
    path = Path(run_dir) / METRICS_NAME
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(record)
    return out


def _is_rank_zero() -> bool:
    # As training.args.is_main_process (not imported: the store stays free of training imports).
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _is_temporary(entry: Path) -> bool:
    # What atomic_write_bytes leaves only if the process dies between mkstemp and rename.
    return entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp")


def read_stage_rows(run_dir: Path, name: str) -> list[dict[str, Any]]:
    """Rows of a finished stage, for the next stage; a clear error if it has not run."""
    folder = Path(run_dir) / name
    manifest = folder / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("status") != "complete":
        raise FileNotFoundError(f"stage '{name}' has not finished in {run_dir}; run it first")
    return _read_shards(folder)


def read_stage_records(run_dir: Path, name: str, record: type[R]) -> list[R]:
    """Typed records of a finished stage; a clear error if it has not run."""
    return [record.from_row(row) for row in read_stage_rows(run_dir, name)]


def read_records_so_far(run_dir: Path, name: str, record: type[R]) -> list[R]:
    """Typed records of whatever shards stage `name` has written, finished or not ([] if it never ran):
    for views of a run in progress, never for feeding a later stage."""
    return [record.from_row(row) for row in _read_shards(Path(run_dir) / name)]


def _read_shards(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("shard-*.parquet")):
        out.extend(pq.read_table(path).to_pylist())
    return out


@contextlib.contextmanager
def lock_run_dir(run_dir: Path, field: str = "output.run_dir") -> Iterator[None]:
    """Hold an exclusive lock on RUN/.lock while the block runs; one clear error if it cannot be had.

    Two processes writing the same stage would interleave shards and manifests. `flock` locks die
    with their process (a killed run never leaves a stale lock) and are per open file, so a second
    `open` in the same process is refused too. The lock file holds the owner's pid for the message;
    it is never deleted (deleting it would let a third process lock a different inode). Once locked,
    a command that is its own only process removes what killed runs left of their atomic writes.
    """
    run_dir = Path(run_dir)
    fd = _open_lock_file(run_dir, field)
    try:
        _acquire(fd, run_dir)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        if _sole_process():
            remove_interrupted_writes(run_dir)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _sole_process() -> bool:
    # Under `accelerate launch` / torchrun every rank runs the command and writes into the run directory
    # (each opens its stage and writes its manifest), but only rank 0 holds the lock: the other ranks'
    # temporary files may be in flight, so nothing is swept then.
    return os.environ.get("WORLD_SIZE", "1").strip() in ("", "1")


def remove_interrupted_writes(run_dir: Path) -> list[Path]:
    """Delete the temporary files that killed runs left in `run_dir` and its stage folders (a process
    that dies between mkstemp and rename in `atomic_write_bytes`; a kill during a shard's write and
    fsync leaves one beside the shards); return them. No reader looks at them, but nothing else would
    ever remove them. Only safe while no other process writes there: the caller holds the lock and is
    the only process of its command."""
    removed: list[Path] = []
    folders = [run_dir, *(entry for entry in run_dir.iterdir() if entry.is_dir())]
    for folder in folders:
        for entry in folder.iterdir():
            # Only names atomic_write_bytes makes: a run directory may be a folder with other things in it.
            if _is_temporary(entry) and entry.name.endswith(TEMPORARY_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _open_lock_file(run_dir: Path, field: str) -> int:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{field}: {run_dir} is a file, not a run directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunDirError(f"{field}: cannot use {run_dir} as a run directory ({exc.strerror})") from None


def _acquire(fd: int, run_dir: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX (Windows): run unlocked rather than not at all
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunDirInUse(
            f"run directory {run_dir} is in use by another intrain process (pid {_lock_owner(fd)})"
        ) from None


def _lock_owner(fd: int) -> str:
    # The owner writes its pid right after locking; in that instant the file can still be empty.
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"

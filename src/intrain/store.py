"""A run is a directory; each stage owns a sub-folder of Parquet shards and a manifest.

Resume is shard-granular: a shard file exists only once it is complete (written to a temporary
name, then renamed), so a crash loses at most the shard in flight. A stage's manifest records the
fingerprint of the config that produced it; reopening with a different fingerprint refuses unless
forced, because mixing shards from two configs would silently corrupt a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from intrain.records import Record

R = TypeVar("R", bound=Record)

SHARD_PATTERN = "shard-{:05d}.parquet"
_VERSIONED = ("intrain", "torch", "transformers", "trl", "peft", "datasets", "math-verify", "vllm")


class StageConfigChanged(RuntimeError):
    """The stage folder was produced by another config."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
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
        if manifest is not None and manifest.get("config_hash") != config_hash:
            if not force:
                raise StageConfigChanged(
                    f"stage '{name}' in {self.path} was produced with a different config "
                    f"({manifest.get('config_hash')} != {config_hash}); use --force to redo it"
                )
            shutil.rmtree(self.path)
            manifest = None
        if manifest is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_manifest({"status": "running", "counts": {}, "timings": {}})

    # -- manifest ---------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

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

    def finish(self, counts: dict[str, Any], timings: dict[str, float] | None = None, **extra: Any) -> None:
        timings = dict(timings or {})
        timings.setdefault("wall_s", round(time.time() - self._started, 2))
        self._write_manifest(
            {"status": "complete", "counts": counts, "timings": timings, "shards": len(self.shard_paths()), **extra}
        )

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


def _read_shards(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("shard-*.parquet")):
        out.extend(pq.read_table(path).to_pylist())
    return out

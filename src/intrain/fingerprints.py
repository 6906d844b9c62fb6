"""What each stage's output depends on, declared once, and the fingerprint derived from it.

A stage declares its inputs as a `StageInputs`: the config fields it reads (dotted paths; a section
name stands for all its fields) and the upstream stages whose output it reads. Its fingerprint is a
hash of exactly those fields' values, the upstream stages' own fingerprints (read from their
manifests, so redoing `sample` invalidates `propose` and everything after it) and the explicit
arguments of the call (the checkpoint an eval scores, an RL seed chosen by `compare`). A few fields
name files whose content is the real input (`CONTENT_INPUTS`: an adapter folder, a proposer
template, a problem file or local dataset folder): a digest of that content enters too, so an adapter
rebuilt in place, an edited template or a data file rewritten under the same name redoes what it
fed. Nothing else enters, so changing a field a stage does not read never redoes it, and changing one
it reads always does. `NOT_STAGE_INPUTS` lists the fields no stage output depends
on; a test walks every leaf of the config and fails when a field is in neither place.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intrain.config import Config, RayConfig, RLConfig, SFTConfig

# Ray decides where shards run, not what they hold: a shard's seed comes from its index, and the driver
# writes every shard itself (tests/integration/test_ray.py: 1 and 2 workers write the same bytes as none).
_WHERE_SHARDS_RUN = "where generation shards run (Ray actors or this process); each shard's rows are the same"

# Fields that decide which stages run or how fast, never what a stage writes.
NOT_STAGE_INPUTS: dict[str, str] = {
    "grading.workers": "pool size; verdicts do not depend on it",
    "model.ray": _WHERE_SHARDS_RUN,
    # `propose` declares its whole section, so this one is dropped from it as a whole (null or set) and,
    # for the test that walks every leaf, leaf by leaf.
    "propose.proposer.model.ray": _WHERE_SHARDS_RUN,
    **{f"propose.proposer.model.ray.{name}": _WHERE_SHARDS_RUN for name in RayConfig.model_fields},
    "output.run_dir": "where the run lives, not what it holds",
    "output.keep_checkpoints": "how many resume points survive a completed stage, not what the stage wrote",
    "output.report_to": "where the run's metrics are also sent (trackers), not what a stage writes",
    "rl.enabled": "whether `intrain run` runs RL at all",
    # vllm_mode itself stays an input: colocated engines and a server sample with different seeds and batches.
    "rl.vllm_server_base_url": "where the vLLM server of vllm_mode=server listens, not what it generates",
    "rl.vllm_server_timeout": "how long the trainer waits for the vLLM server to come up",
    "compare": "which arms and seeds `intrain compare` runs; each choice reaches the RL stage as an argument",
    "warmup": "read by `intrain warmup`, a one-off job that writes an adapter and its report, not a resumable stage",
    "lab.pretrain": "read by `intrain lab pretrain`, a one-off job that writes a model folder; runs meet that model "
    "through model.path",
}

# Generation numerics: the engine, device, precision, batch composition and context length all change
# sampled tokens, so every generating stage declares them; training stages declare only what they load.
_POLICY = ("model.path", "model.adapter", "model.chat_template_kwargs")
_TRAINING = (*_POLICY, "model.device", "model.dtype")
_GENERATION = (
    *_TRAINING,
    "model.engine",
    "model.batch_size",
    "model.tensor_parallel_size",
    "model.gpu_memory_utilization",
    "model.max_model_len",
)
# What a training stage saves (an adapter folder or a whole model) and which weights it trains.
_TRAINED = (*_TRAINING, "model.train_adapter")
_TRAIN_DATA = ("data.train", "data.on_invalid")


@dataclass(frozen=True)
class StageInputs:
    """Config fields (dotted paths or section names) and upstream stages that decide a stage's output."""

    config: tuple[str, ...]
    upstream: tuple[str, ...] = ()


SAMPLE = StageInputs(config=(*_GENERATION, *_TRAIN_DATA, "data.prompt_template", "sample", "grading.timeout_s"))
EVAL = StageInputs(
    config=(*_GENERATION, "data.eval", *_TRAIN_DATA, "data.prompt_template", "eval", "grading.timeout_s")
)
PROPOSE = StageInputs(config=(*_GENERATION, "propose"), upstream=("sample",))
FILTER = StageInputs(
    config=(*_GENERATION, "data.prompt_template", "filter", "grading.timeout_s"), upstream=("propose",)
)
REFLECT = StageInputs(
    config=(
        *_GENERATION,
        "propose.temperature",
        "propose.top_p",
        "propose.top_k",
        "propose.seed",
        "propose.shard_size",
        "propose.max_attempts",
        "sample.max_tokens",
        "grading.timeout_s",
    ),
    upstream=("sample",),
)
# InT SFT reads the whole `sft` section; the baselines' SFT arms all of it but `sft.max_rows` and
# `sft.target` (InT only).
SFT = StageInputs(config=(*_TRAINED, "data.prompt_template", "sft"), upstream=("filter",))
_INT_ONLY = ("max_rows", "target")
_SFT_CONFIG = (*_TRAINED, "data.prompt_template", *(f"sft.{f}" for f in SFTConfig.model_fields if f not in _INT_ONLY))
SFT_REFERENCE = StageInputs(config=(*_SFT_CONFIG, *_TRAIN_DATA))
SFT_RFT = StageInputs(config=_SFT_CONFIG, upstream=("sample",))
SFT_REFLECTION = StageInputs(config=_SFT_CONFIG, upstream=("reflect",))
# RL reads its problems from where `rl.data` says (see `rl_inputs`): the run's training problems
# (null), a source declared inside `rl` itself, or the filter stage's kept rows ('covered').
_RL = (*_TRAINED, "model.max_model_len", "data.prompt_template", "rl", "grading.timeout_s")
RL = StageInputs(config=(*_RL, *_TRAIN_DATA))
RL_SOURCE = StageInputs(config=(*_RL, "data.on_invalid"))
RL_COVERED = StageInputs(config=_RL, upstream=("filter",))

LAB_TABLE1 = StageInputs(
    config=(
        *_GENERATION,
        "data.prompt_template",
        "propose.separator",
        "filter.temperature",
        "filter.top_p",
        "filter.top_k",
        "filter.max_tokens",
        "filter.seed",
        "filter.shard_size",
        "lab.attempts",
        "lab.n",
        "lab.oracle_seed",
        "lab.precision_n",
        "lab.precision_noise",
        "grading.timeout_s",
    ),
    upstream=("sample", "propose"),
)

LAB_FILTER_PRECISION = StageInputs(config=LAB_TABLE1.config, upstream=("sample", "propose"))
# Labels and limit reach the stage as arguments of the call (`intrain eval-proposer --labels --limit`).
EVAL_PROPOSER = StageInputs(config=(*_GENERATION, "propose"))
# One declaration for both splits' stages: each reads its own source, and sampling is `sample`'s with n = hard_k.
LAB_HARD_SPLIT = StageInputs(
    config=(
        *_GENERATION,
        *_TRAIN_DATA,
        "data.eval",
        "data.prompt_template",
        "sample",
        "lab.hard_k",
        "grading.timeout_s",
    )
)

# Every declaration, by stage name; a stage whose inputs depend on a mode has one entry per mode (`rl:<mode>`).
ALL_STAGES: dict[str, StageInputs] = {
    "sample": SAMPLE,
    "eval": EVAL,
    "propose": PROPOSE,
    "filter": FILTER,
    "reflect": REFLECT,
    "sft": SFT,
    "sft-reference": SFT_REFERENCE,
    "sft-rft": SFT_RFT,
    "sft-reflection": SFT_REFLECTION,
    "rl": RL,
    "rl:source": RL_SOURCE,
    "rl:covered": RL_COVERED,
    "lab-table1": LAB_TABLE1,
    "lab-filter-precision": LAB_FILTER_PRECISION,
    "lab-hard-split": LAB_HARD_SPLIT,
    "eval-proposer": EVAL_PROPOSER,
}


def rl_inputs(rl: RLConfig) -> StageInputs:
    """The RL stage's inputs for its `rl.data` mode (one stage, one declaration per mode)."""
    if rl.data is None:
        return RL
    return RL_COVERED if rl.data == "covered" else RL_SOURCE


def config_value(config: Config, path: str) -> Any:
    """The JSON value of a dotted config path."""
    node: Any = config.model_dump(mode="json")
    for part in path.split("."):
        node = node[part] if isinstance(node, dict) else None
    return node


def fingerprint(inputs: StageInputs, config: Config, run_dir: Path | None, **arguments: Any) -> str:
    """Hash of the declared config values, the content behind the declared ones that name files, the
    upstream stages' fingerprints and the call's arguments."""
    payload: dict[str, Any] = {
        "config": {path: _without(config_value(config, path), path) for path in inputs.config},
        "upstream": {name: upstream_hash(run_dir, name) for name in inputs.upstream},
        "arguments": arguments,
    }
    contents = {
        path: digest(value)
        for path, digest in CONTENT_INPUTS.items()
        if _declares(inputs, path) and (value := config_value(config, path)) is not None
    }
    if contents:  # absent otherwise, so stages that read no such file keep their fingerprints
        payload["contents"] = contents
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _declares(inputs: StageInputs, path: str) -> bool:
    return any(path == d or path.startswith(d + ".") for d in inputs.config)


def _adapter_digest(folder: str) -> str | None:
    # What PEFT loads from the folder; its model card and report may change without changing the model.
    h = hashlib.sha256()
    try:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            h.update((Path(os.path.expanduser(folder)) / name).read_bytes())
    except OSError:
        return None  # the loader says what is missing, when a stage gets to it
    return h.hexdigest()[:16]


def _template_digest(name_or_path: str) -> str | None:
    from intrain.prompts import template_source

    source = template_source(name_or_path)
    return None if source is None else hashlib.sha256(source.encode()).hexdigest()[:16]


# Source digests of data of at least this size are memoised per process (see _source_digest).
MEMO_MIN_BYTES = 64 << 20
_SOURCE_DIGESTS: dict[tuple[Any, ...], str] = {}


def _source_digest(source: Any) -> str | None:
    # Problems read from a file or a local dataset folder. Generated problems (arithmetic) are fixed by their
    # fields, and a hub dataset by its name: neither has a local file to read.
    if not isinstance(source, dict):
        return None  # rl.data: null or 'covered'
    location = {"file": source.get("path"), "champ": source.get("path"), "hf": source.get("name")}.get(source["kind"])
    if not location:
        return None
    root = Path(os.path.expanduser(location))
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else []
    if not files:
        return None  # a hub name, or a path the loader will report missing
    names = [f.relative_to(root).as_posix() for f in files]
    stats = [(name, (st := f.stat()).st_size, st.st_mtime_ns) for name, f in zip(names, files)]
    # Every stage of a run fingerprints its data, and a dataset folder can hold GBs: a large one is read once
    # per process unless a file's size or modification time changed. Small ones are read every time, since a
    # rewrite within one clock tick of the file system keeps the modification time.
    key = (str(root.resolve()), *stats)
    if key in _SOURCE_DIGESTS:
        return _SOURCE_DIGESTS[key]
    h = hashlib.sha256()
    for name, file in zip(names, files):
        h.update(name.encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()[:16]
    if sum(size for _, size, _ in stats) >= MEMO_MIN_BYTES:
        _SOURCE_DIGESTS[key] = digest
    return digest


# Config fields that name files whose content decides a stage's output -> how to digest that content.
CONTENT_INPUTS = {
    "model.adapter": _adapter_digest,
    "propose.proposer.model.adapter": _adapter_digest,
    "propose.template": _template_digest,
    "data.train": _source_digest,
    "data.eval": _source_digest,
    "rl.data": _source_digest,
}


def _without(value: Any, path: str) -> Any:
    # A declared section minus its fields that no output depends on (e.g. `rl` without `rl.enabled`).
    if not isinstance(value, dict):
        return value
    return {k: _without(v, f"{path}.{k}") for k, v in value.items() if f"{path}.{k}" not in NOT_STAGE_INPUTS}


def upstream_hash(run_dir: Path | None, name: str) -> str | None:
    if run_dir is None:
        return None
    manifest = Path(run_dir) / name / "manifest.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text()).get("config_hash")


def producer_hash(model_path: str | None) -> str | None:
    """Fingerprint of the stage that wrote a checkpoint (`RUN/<stage>/model`), so that redoing that
    stage invalidates whatever was computed from the checkpoint although its path is unchanged."""
    if not model_path:
        return None
    folder = Path(os.path.expanduser(model_path))
    if not folder.is_dir():
        return None
    return upstream_hash(folder.parent.parent, folder.parent.name)

"""Generation stages on Ray actors (`model.ray`): the same bytes as in process for 1 and 2 workers, a
worker killed mid-shard replaced and its shard redone, and no `import ray` without a `ray` section.

One local Ray cluster (2 CPUs) serves the module. Its workers import this folder (PYTHONPATH) and run
`script_workers` at start-up, which gives them what the `scripted` fixture gives this process: a
proposer and continuer that a random tiny model cannot be, around the real engine (plain sampling, as
in `sample` and `eval`, goes to the real engine unchanged).
"""

import hashlib
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from tiny_configs import write_config

from intrain.config import ConfigError, load_config
from intrain.stages import evaluate, propose, reflect, rollouts, sample
from intrain.stages import filter as filter_stage
from intrain.stages.common import RunContext
from intrain.store import Stage

ray = pytest.importorskip("ray")

HERE = Path(__file__).parent
STAGES = ("sample", "eval-base", "propose", "filter", "reflect")


def script_workers() -> None:
    """Ray's worker_process_setup_hook: the `scripted` fixture's generator in every Ray worker."""
    from conftest import ScriptedProposerAndContinuer
    from intrain.stages import common

    real = common.build_generator
    common.build_generator = lambda *a, **k: ScriptedProposerAndContinuer(real(*a, **k))


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])},
            "worker_process_setup_hook": "test_ray.script_workers",
        },
    )
    yield
    ray.shutdown()


def config_path(tmp_path: Path, model_dir: str, workers: int | None) -> str:
    ray_section = None if workers is None else {"address": "local", "workers": workers}
    return write_config(
        tmp_path,
        model_dir,
        model={"ray": ray_section},
        sample={"n": 2, "max_tokens": 10, "shard_size": 2},
        eval={"n": 2, "ks": [1], "max_tokens": 8, "shard_size": 1},
        propose={"n": 2, "template": "compact", "max_prompt_tokens": 4096, "shard_size": 3},
        filter={"n": 4, "wave_size": 2, "shard_size": 4},
    )


def shard_hashes(run: Path, stage: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run / stage).glob("shard-*.parquet"))}


def test_every_generation_stage_writes_the_same_bytes_with_0_1_2_workers(tmp_path, tiny_model_dir, scripted, cluster):
    runs = {}
    for workers in (None, 1, 2):
        folder = tmp_path / f"workers-{workers}"
        folder.mkdir()
        ctx = RunContext(load_config(config_path(folder, tiny_model_dir, workers)), folder / "run")
        try:
            sample.run(ctx)
            evaluate.run(ctx, "base")
            propose.run(ctx)
            filter_stage.run(ctx)
            reflect.run(ctx)
        finally:
            ctx.close()
        runs[workers] = folder / "run"
    for stage in STAGES:
        reference = shard_hashes(runs[None], stage)
        assert len(reference) >= 2, stage  # each stage spreads over both workers
        assert shard_hashes(runs[1], stage) == reference, stage
        assert shard_hashes(runs[2], stage) == reference, stage
        counts = json.loads((runs[None] / stage / "manifest.json").read_text())["counts"]
        assert json.loads((runs[2] / stage / "manifest.json").read_text())["counts"] == counts
    # The scripted proposer reached the workers: the filter had ok proposals to continue, and kept some.
    filtered = json.loads((runs[2] / "filter" / "manifest.json").read_text())["counts"]
    assert filtered["candidates"] > 0 and 0 < filtered["kept"] < filtered["candidates"]


def crash_once(marker: str, work, ctx, index, *args, **kwargs):
    """A shard's work that kills its own worker process on shard 1, the first time only."""
    if index == 1 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return work(ctx, index, *args, **kwargs)


def test_a_worker_killed_mid_shard_is_replaced_and_its_shard_redone(tmp_path, tiny_model_dir, cluster, monkeypatch):
    (tmp_path / "plain").mkdir()
    plain = RunContext(load_config(config_path(tmp_path / "plain", tiny_model_dir, None)), tmp_path / "plain" / "run")
    try:
        sample.run(plain)
    finally:
        plain.close()

    marker = tmp_path / "crashed"
    monkeypatch.setattr(rollouts, "rollout_shard", partial(crash_once, str(marker), rollouts.rollout_shard))
    written: list[int] = []
    write_records = Stage.write_records

    def counted(self, index, records, record):
        written.append(index)
        write_records(self, index, records, record)

    monkeypatch.setattr(Stage, "write_records", counted)
    (tmp_path / "ray").mkdir()
    ctx = RunContext(load_config(config_path(tmp_path / "ray", tiny_model_dir, 1)), tmp_path / "ray" / "run")
    try:
        stage = sample.run(ctx)
    finally:
        ctx.close()
    assert marker.exists()  # shard 1's first worker did die
    assert sorted(written) == [0, 1]  # and every shard was written once
    assert shard_hashes(tmp_path / "ray" / "run", "sample") == shard_hashes(tmp_path / "plain" / "run", "sample")
    keys = [(r["problem_id"], r["sample_index"]) for r in stage.rows()]
    assert len(keys) == len(set(keys)) == 8


def test_without_the_dist_extra_a_ray_section_is_a_one_line_config_error(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delitem(sys.modules, "intrain.stages.ray_shards", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    ctx = RunContext(load_config(config_path(tmp_path, tiny_model_dir, 1)), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"pip install 'intrain\[dist\]'"):
        sample.run(ctx)
    ctx.close()


def test_without_a_ray_section_ray_is_never_imported(tmp_path, tiny_model_dir):
    config = config_path(tmp_path, tiny_model_dir, None)
    code = (
        "import sys\n"
        "from intrain.cli import main\n"
        f"assert main(['sample', {config!r}]) == 0\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'\n"
        "assert 'intrain.stages.ray_shards' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

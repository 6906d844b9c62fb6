"""Multi-GPU training: the shipped accelerate configs (loaded and turned into a launch environment by
accelerate's own code, no GPU needed), the GRPOConfig of each vLLM mode, and what the GRPO step log
does when several ranks each grade a slice of a step's rollouts."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from intrain.config import PACKAGED_CONFIGS, Config, ConfigError, load_config
from intrain.grading import Grader, Verdict
from intrain.stages import rl as rl_stage
from intrain.stages.common import RunContext
from intrain.training import args as train_args
from intrain.training import grpo

ACCELERATE_DIR = PACKAGED_CONFIGS / "accelerate"
REPO = Path(__file__).resolve().parents[2]

# name -> (distributed type, machines, processes over all machines)
SHIPPED = {
    "zero3-1x8.yaml": (DistributedType.DEEPSPEED, 1, 8),
    "zero3-2x8.yaml": (DistributedType.DEEPSPEED, 2, 16),
    "fsdp2-1x8.yaml": (DistributedType.FSDP, 1, 8),
    "fsdp2-2x8.yaml": (DistributedType.FSDP, 2, 16),
}


def launch_args(*argv: str):
    """`accelerate launch ARGV -m intrain.cli sft CONFIG`, parsed and completed from the config file the way
    `accelerate launch` does before it starts any process (accelerate's own parser and validation)."""
    parser = launch_command_parser()
    args = parser.parse_args([*argv, "-m", "intrain.cli", "sft", "CONFIG"])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def unknown_nested_keys(path: Path) -> list[str]:
    """Keys under deepspeed_config / fsdp_config that `accelerate launch` does not know.

    accelerate validates only the top level: it copies each nested key onto its launch arguments
    (fsdp_config keys with an `fsdp_` prefix) whether or not any launch argument has that name, so a
    misspelt nested key would be ignored without a word.
    """
    known = set(vars(launch_command_parser().parse_args(["x.py"])))
    raw = yaml.safe_load(path.read_text())
    unknown = [key for key in raw.get("deepspeed_config", {}) if key not in known]
    for key in raw.get("fsdp_config", {}):
        if (key if key.startswith("fsdp") else f"fsdp_{key}") not in known:
            unknown.append(key)
    return unknown


def test_the_shipped_set():
    assert sorted(p.name for p in ACCELERATE_DIR.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_loads_with_accelerates_loader(name):
    kind, machines, processes = SHIPPED[name]
    config = load_config_from_file(str(ACCELERATE_DIR / name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == kind
    assert (config.num_machines, config.num_processes, config.machine_rank) == (machines, processes, 0)
    assert config.mixed_precision == "bf16"
    assert not config.use_cpu
    assert unknown_nested_keys(ACCELERATE_DIR / name) == []
    if kind == DistributedType.DEEPSPEED:
        ds = config.deepspeed_config
        assert ds["zero_stage"] == 3
        assert ds["zero3_save_16bit_model"] is True  # the stage's model/ must be one HF folder
        assert ds["deepspeed_multinode_launcher"] == "standard"  # one `accelerate launch` per node
    else:
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2
        assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # idem; SHARDED would save no HF folder
    if machines > 1:
        # The head's address differs per cluster: it comes from the command line, never from the file.
        assert config.main_process_ip is None
        assert config.main_process_port is not None


@pytest.mark.parametrize("name", ["fsdp2-1x8.yaml", "zero3-1x8.yaml"])
def test_one_node_launch_environment(name):
    args, defaults = launch_args("--config_file", str(ACCELERATE_DIR / name))
    assert args.module and args.training_script == "intrain.cli"
    assert args.training_script_args == ["sft", "CONFIG"]
    if defaults.distributed_type == DistributedType.FSDP:
        env = prepare_multi_gpu_env(args)
        assert env["ACCELERATE_USE_FSDP"] == "true"
        assert env["FSDP_VERSION"] == "2"
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
        assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    else:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
        assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert args.nproc_per_node == "8"


@pytest.mark.parametrize("name", ["fsdp2-2x8.yaml", "zero3-2x8.yaml"])
def test_two_node_launch_takes_rank_and_head_from_the_command_line(name):
    # Node 1's command (machine rank 1 checks no local port, unlike rank 0).
    args, defaults = launch_args(
        "--config_file", str(ACCELERATE_DIR / name), "--machine_rank", "1", "--main_process_ip", "10.0.0.7"
    )
    if defaults.distributed_type == DistributedType.FSDP:
        prepare_multi_gpu_env(args)
    else:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        cmd, _ = prepare_deepspeed_cmd_env(args)
        assert cmd is None  # the standard launcher: torchrun on each node, not deepspeed's pdsh runner
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    assert (args.rdzv_endpoint, args.rdzv_backend) == ("10.0.0.7:29500", "static")


def test_num_processes_on_the_command_line_overrides_the_file():
    # RL with a vLLM server on 4 of the 8 GPUs: the trainer gets the other 4 (docs/SCALING.md).
    args, _ = launch_args("--config_file", str(ACCELERATE_DIR / "fsdp2-1x8.yaml"), "--num_processes", "4")
    prepare_multi_gpu_env(args)
    assert args.nproc_per_node == "4"


def test_a_misspelt_top_level_key_fails_to_load(tmp_path):
    text = (ACCELERATE_DIR / "zero3-1x8.yaml").read_text().replace("num_processes:", "num_process:")
    (tmp_path / "typo.yaml").write_text(text)
    with pytest.raises(ValueError, match="num_process"):
        load_config_from_file(str(tmp_path / "typo.yaml"))


@pytest.mark.parametrize(
    ("name", "key", "typo"),
    [
        ("zero3-1x8.yaml", "zero3_save_16bit_model:", "zero3_save_16bit_modle:"),
        ("fsdp2-1x8.yaml", "fsdp_state_dict_type:", "fsdp_state_dict_typ:"),
    ],
)
def test_a_misspelt_nested_key_is_caught(tmp_path, name, key, typo):
    text = (ACCELERATE_DIR / name).read_text()
    assert key in text
    (tmp_path / "typo.yaml").write_text(text.replace(key, typo))
    load_config_from_file(str(tmp_path / "typo.yaml"))  # accelerate itself lets it through ...
    assert unknown_nested_keys(tmp_path / "typo.yaml") == [typo.rstrip(":")]  # ... our check does not


def test_package_data_ships_every_packaged_yaml():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["intrain"]
    package = PACKAGED_CONFIGS.parent
    shipped = {path for pattern in globs for path in package.glob(pattern)}
    wanted = set(PACKAGED_CONFIGS.glob("*.yaml")) | set(ACCELERATE_DIR.glob("*.yaml"))
    assert wanted and wanted <= shipped, sorted(str(p) for p in wanted - shipped)


# ----------------------------------------------------------------------------- GRPO and vLLM modes


def test_grpo_args_colocate(tmp_path):
    cfg = Config.model_validate({"rl": {"vllm_gpu_memory_utilization": 0.4}, "model": {"max_model_len": 20000}})
    args = grpo.grpo_args(cfg.rl, cfg.model, tmp_path, "cpu", use_vllm=True)
    assert (args.use_vllm, args.vllm_mode) == (True, "colocate")
    assert args.vllm_gpu_memory_utilization == 0.4
    assert args.vllm_max_model_length == 20000
    assert args.vllm_server_base_url is None


def test_grpo_args_server(tmp_path):
    cfg = Config.model_validate(
        {"rl": {"vllm_mode": "server", "vllm_server_base_url": "http://10.0.0.5:8001", "vllm_server_timeout": 900}}
    )
    args = grpo.grpo_args(cfg.rl, cfg.model, tmp_path, "cpu", use_vllm=True, world_size=4)
    assert (args.use_vllm, args.vllm_mode) == (True, "server")
    assert args.vllm_server_base_url == "http://10.0.0.5:8001"  # TRL then ignores host and port
    assert args.vllm_server_timeout == 900
    # Colocate-only fields stay TRL's defaults: the server's command line sets its memory and context.
    assert args.vllm_max_model_length is None
    # Batch sizes count the trainer's processes only (the server's GPUs are not ranks).
    assert args.per_device_train_batch_size * 4 * args.gradient_accumulation_steps == 32 * 8


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_grpo_args_without_vllm(tmp_path, mode):
    cfg = Config.model_validate({"rl": {"vllm_mode": mode}})
    assert grpo.grpo_args(cfg.rl, cfg.model, tmp_path, "cpu", use_vllm=False).use_vllm is False


def test_server_mode_refuses_use_vllm_never(tmp_path):
    (tmp_path / "c.yaml").write_text("rl: {vllm_mode: server, use_vllm: never}\n")
    with pytest.raises(ConfigError, match=r"rl: .*server"):
        load_config(tmp_path / "c.yaml")


def test_train_grpo_refuses_server_mode_without_vllm(tmp_path, monkeypatch):
    # use_vllm auto resolving to no vLLM (no CUDA here) must not quietly generate with transformers.
    cfg = Config.model_validate({"rl": {"vllm_mode": "server", "prompts_per_step": 1}, "model": {"device": "cpu"}})
    monkeypatch.setattr(grpo, "want_vllm", lambda setting: False)
    with pytest.raises(ConfigError, match="vllm_mode: server"):
        grpo.train_grpo([{"prompt": "p", "answer": "1"}], cfg.rl, cfg.model, "unused", None, tmp_path, None)


# ----------------------------------------------------------------------------- several ranks


def test_rank_helpers(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert train_args.is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert train_args.is_main_process()
    monkeypatch.setenv("RANK", "3")
    assert not train_args.is_main_process()
    monkeypatch.setenv("LOCAL_RANK", "3")
    train_args.bind_cuda_device()  # no CUDA here: nothing to bind, and no error


def test_step_groups_join_the_ranks_in_rank_order():
    rank0 = {"problem_ids": ["a", "a", "b", "b"], "rewards": [1.0, 0.0, 1.0, 1.0]}
    rank1 = {"problem_ids": ["c", "c"], "rewards": [0.0, 0.0]}
    assert grpo.step_groups([rank0, rank1], 2) == [["a", 1], ["b", 2], ["c", 0]]
    # A rank that graded nothing (or without ids): no groups rather than a part of them.
    assert grpo.step_groups([rank0, None], 2) is None
    assert grpo.step_groups([rank0, {"problem_ids": None, "rewards": [0.0]}], 2) is None


class _Args:
    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.num_generations = 2


class _State:
    def __init__(self, zero: bool) -> None:
        self.global_step = 5
        self.is_world_process_zero = zero


class _Reward:
    def __init__(self, batch) -> None:
        self.batch = batch

    def take_last_batch(self):
        batch, self.batch = self.batch, None
        return batch


def test_step_log_gathers_every_ranks_groups(tmp_path, monkeypatch):
    other_rank = {"problem_ids": ["c", "c"], "rewards": [1.0, 1.0]}
    gathered = []
    monkeypatch.setattr(grpo, "_gather_objects", lambda obj: gathered.append(obj) or [obj, other_rank])
    log = grpo.StepLog(tmp_path / "log.jsonl", _Reward({"problem_ids": ["a", "a"], "rewards": [0.0, 1.0]}))
    log.on_log(_Args(world_size=2), _State(zero=True), None, logs={"reward": 0.75})
    assert gathered == [{"problem_ids": ["a", "a"], "rewards": [0.0, 1.0]}]
    assert json.loads((tmp_path / "log.jsonl").read_text()) == {
        "step": 5,
        "reward": 0.75,
        "groups": [["a", 1], ["c", 2]],
    }


def test_step_log_other_ranks_join_the_gather_and_write_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(grpo, "_gather_objects", lambda obj: calls.append(obj) or [None, obj])
    log = grpo.StepLog(tmp_path / "log.jsonl", _Reward({"problem_ids": ["c", "c"], "rewards": [1.0, 1.0]}))
    log.on_log(_Args(world_size=2), _State(zero=False), None, logs={"reward": 0.75})
    assert len(calls) == 1
    assert not (tmp_path / "log.jsonl").exists()
    # Logs without a reward (the end-of-training summary) reach no collective on any rank.
    log.on_log(_Args(world_size=2), _State(zero=False), None, logs={"train_runtime": 1.0})
    assert len(calls) == 1


def test_step_log_single_process_does_not_gather(tmp_path, monkeypatch):
    monkeypatch.setattr(grpo, "_gather_objects", lambda obj: pytest.fail("gathered in a single process"))
    log = grpo.StepLog(tmp_path / "log.jsonl", _Reward({"problem_ids": ["a", "a"], "rewards": [1.0, 1.0]}))
    log.on_log(_Args(world_size=1), _State(zero=True), None, logs={"reward": 1.0})
    assert json.loads((tmp_path / "log.jsonl").read_text())["groups"] == [["a", 2]]


# ----------------------------------------------------------------------------- resume at the last step


class _ScriptedGrader(Grader):
    """Even text length = correct, so advantages are non-zero and weights move; no worker processes."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.batches = 0

    def grade(self, completions, golds):
        self.batches += 1
        return [Verdict(correct=len(c) % 2 == 0, reason="scripted", extracted=None) for c in completions]


class _Killed(Exception):
    pass


def test_rl_killed_after_its_final_checkpoint_trains_no_extra_step(tiny_model_dir, tmp_path, monkeypatch):
    """Steps end mid-epoch (3 steps, 2 per epoch): resumed from checkpoint-3, Trainer would train a step 4."""
    from safetensors.torch import load_file

    cfg = Config.model_validate(
        {
            "model": {"path": tiny_model_dir, "device": "cpu"},
            "data": {"train": {"kind": "arithmetic", "size": 4, "seed": 11}},
            "rl": {"steps": 3, "group_size": 2, "prompts_per_step": 2, "max_completion_tokens": 8, "save_steps": 5},
            "grading": {"workers": 1},
        }
    )
    real = grpo.StepLog

    def dying_step_log(path, reward):
        callback = real(path, reward)

        def on_save(args, state, control, **kwargs):
            raise _Killed  # right after the final checkpoint is on disk, before the model is saved

        callback.on_save = on_save
        return callback

    monkeypatch.setattr(grpo, "StepLog", dying_step_log)
    with pytest.raises(_Killed):
        rl_stage.run(RunContext(cfg, tmp_path, _grader=_ScriptedGrader()))
    final_checkpoint = load_file(str(tmp_path / "rl" / "checkpoints" / "checkpoint-3" / "model.safetensors"))
    monkeypatch.undo()

    grader = _ScriptedGrader()
    stage = rl_stage.run(RunContext(cfg, tmp_path, _grader=grader))
    counts = stage.manifest()["counts"]
    assert (counts["steps"], counts["resumed_from_step"]) == (3, 3)
    assert grader.batches == 0  # nothing generated, nothing trained
    assert [r["step"] for r in grpo.read_log(stage.path / grpo.LOG_NAME)] == [1, 2, 3]
    saved = load_file(str(stage.path / "model" / "model.safetensors"))
    assert saved.keys() == final_checkpoint.keys()
    assert all(saved[k].equal(final_checkpoint[k]) for k in saved)
    assert (stage.path / "model" / "tokenizer.json").exists()

"""A finished stage is reused only when every input it declares is unchanged (one test per bug found)."""

import pytest
from tiny_configs import write_config

from intrain.cli import main
from intrain.config import load_config
from intrain.stages.common import RunContext
from intrain.store import StageConfigChanged

TINY_RUN = dict(
    sample={"n": 2, "max_tokens": 8, "shard_size": 4},
    propose={"n": 2, "template": "compact", "max_prompt_tokens": 4096, "max_tokens": 8},
    sft={"learning_rate": 1e-3, "epochs": 1, "effective_batch_size": 2, "per_device_batch_size": 2, "max_length": 1024},
)


def refused(capsys, *argv: str) -> bool:
    code = main(list(argv))
    return code == 2 and "different config" in capsys.readouterr().err


def test_propose_redoes_when_leak_filter_or_selection_changes(tmp_path, tiny_model_dir, scripted, capsys):
    config = write_config(tmp_path, tiny_model_dir, **TINY_RUN)
    assert main(["sample", config]) == 0 and main(["propose", config]) == 0
    assert main(["propose", config]) == 0  # unchanged: reused
    assert refused(capsys, "propose", config, "--set", "propose.leak_filter=false")
    assert refused(capsys, "propose", config, "--set", "propose.per_attempt=all")
    # Fields propose does not read leave it alone.
    assert main(["propose", config, "--set", "filter.n=3", "--set", "grading.workers=2"]) == 0


def test_sample_redoes_when_the_grading_timeout_changes(tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir, **TINY_RUN)
    assert main(["sample", config]) == 0
    assert refused(capsys, "sample", config, "--set", "grading.timeout_s=3")
    assert main(["sample", config, "--set", "grading.workers=2"]) == 0


def test_sft_reference_redoes_when_the_training_data_changes(tmp_path, tiny_model_dir):
    from intrain.compare import prepare_init

    config = write_config(tmp_path, tiny_model_dir, **TINY_RUN)
    ctx = RunContext(config=load_config(config), run_dir=tmp_path / "run")
    init, stages = prepare_init(ctx, "sft_reference")
    assert stages == ["sft-reference"] and init.endswith("sft-reference/model")
    assert prepare_init(ctx, "sft_reference")[0] == init  # unchanged: reused
    ctx.config = load_config(config, ["data.train.seed=99"])
    with pytest.raises(StageConfigChanged):
        prepare_init(ctx, "sft_reference")
    ctx.close()


def test_eval_redoes_when_the_checkpoint_it_scored_is_retrained(tmp_path, tiny_model_dir, capsys):
    import shutil

    config = write_config(tmp_path, tiny_model_dir, **TINY_RUN, eval={"n": 1, "ks": [1], "max_tokens": 4})
    checkpoint = tmp_path / "run" / "sft" / "model"
    shutil.copytree(tiny_model_dir, checkpoint)
    manifest = checkpoint.parent / "manifest.json"
    manifest.write_text('{"status": "complete", "config_hash": "first"}')
    assert main(["eval", config, "--model", str(checkpoint), "--label", "int-sft"]) == 0
    assert main(["eval", config, "--model", str(checkpoint), "--label", "int-sft"]) == 0  # unchanged: reused
    manifest.write_text('{"status": "complete", "config_hash": "second"}')  # the SFT stage was redone
    assert refused(capsys, "eval", config, "--model", str(checkpoint), "--label", "int-sft")

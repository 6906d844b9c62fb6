from pathlib import Path

import pytest
import yaml

from intrain.config import Config, ConfigError, load_config, to_yaml
from intrain.fingerprints import config_value


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def paper_table() -> dict[str, object]:
    """field -> paper value, from docs/PAPER_DEFAULTS.md."""
    page = Path(__file__).parents[2] / "docs" / "PAPER_DEFAULTS.md"
    rows = {}
    for line in page.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = yaml.safe_load(cells[1])
    return rows


def test_defaults_match_the_papers_values_documented_in_docs():
    table = paper_table()
    assert len(table) >= 25
    defaults = Config()
    wrong = {
        field: (config_value(defaults, field), paper)
        for field, paper in table.items()
        if config_value(defaults, field) != paper
    }
    assert not wrong, f"default != paper value (field: (default, paper)): {wrong}"


def test_unknown_key_names_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"sample\.temprature: Extra inputs"):
        load_config(write(tmp_path, "sample: {temprature: 0.5}\n"))


def test_bad_value_names_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"filter\.n: "):
        load_config(write(tmp_path, "filter: {n: 0}\n"))
    with pytest.raises(ConfigError, match=r"data\.train"):
        load_config(write(tmp_path, "data: {train: {kind: file}}\n"))
    with pytest.raises(ConfigError, match=r"warmup\.synthetic_slip_weights\.1: "):
        load_config(write(tmp_path, "warmup: {synthetic_slip_weights: [1, 0]}\n"))
    with pytest.raises(ConfigError, match=r"warmup\.synthetic_slip_weights: "):
        load_config(write(tmp_path, "warmup: {synthetic_slip_weights: []}\n"))


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(
        write(tmp_path, "sample: {n: 2}\n"), ["sample.n=8", "eval.ks=[1, 2]", "eval.n=4", "propose.proposer.kind=self"]
    )
    assert cfg.sample.n == 8 and cfg.eval.ks == [1, 2]


def test_override_of_unknown_field_fails(tmp_path):
    with pytest.raises(ConfigError, match=r"nope: Extra inputs"):
        load_config(None, ["nope.x=1"])
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        load_config(None, ["sample.n"])


def test_packaged_configs_load_and_roundtrip(tmp_path):
    for name in ("demo", "paper-qwen3-4b-instruct"):
        cfg = load_config(name)
        again = load_config(write(tmp_path, to_yaml(cfg)))
        assert again == cfg


def test_missing_config_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "sample: [\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n"))


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="min_correct"):
        load_config(None, ["filter.n=2", "filter.min_correct=3"])
    with pytest.raises(ConfigError, match="ks"):
        load_config(None, ["eval.n=4", "eval.ks=[8]"])
    with pytest.raises(ConfigError, match="prompt_template"):
        load_config(None, ["data.prompt_template=solve it"])
    with pytest.raises(ConfigError, match="base_url"):
        load_config(None, ["propose.proposer.kind=openai"])
    with pytest.raises(ConfigError, match=r"model: Value error, train_adapter: there is no model\.adapter"):
        load_config(None, ["model.train_adapter=true"])
    with pytest.raises(ConfigError, match="train_adapter: the vllm engine"):
        load_config(None, ["model.train_adapter=true", "model.adapter=/a", "model.engine=vllm"])
    with pytest.raises(ConfigError, match=r"sft\.lora: model\.train_adapter already trains"):
        load_config(None, ["model.train_adapter=true", "model.adapter=/a", "sft.lora={r: 8}"])
    proposer = ["propose.proposer.kind=model", "propose.proposer.model={path: /p, adapter: /a, train_adapter: true}"]
    with pytest.raises(ConfigError, match=r"propose\.proposer: Value error, model\.train_adapter: the proposer"):
        load_config(None, proposer)


def test_a_partial_warmup_train_keeps_the_warmups_other_settings():
    cfg = load_config("demo", ["warmup.train.epochs=3"])
    assert cfg.warmup.train.epochs == 3
    default = load_config("demo").warmup.train
    assert cfg.warmup.train.model_dump(exclude={"epochs"}) == default.model_dump(exclude={"epochs"})
    assert default.lora is not None and default.learning_rate == 2e-4 and default.group_by_length

import pytest

from intrain.config import Config, ConfigError, fingerprint, load_config, to_yaml


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.sample.n, cfg.sample.temperature, cfg.sample.top_p, cfg.sample.top_k) == (4, 0.7, 0.8, 20)
    assert cfg.sample.max_tokens == 16384
    assert cfg.propose.n == 4 and cfg.propose.max_prompt_tokens == 30000 and cfg.propose.template == "paper"
    assert cfg.filter.n == 32 and cfg.filter.min_correct == 1
    assert cfg.sft.learning_rate == 1e-6 and cfg.sft.epochs == 4 and cfg.sft.effective_batch_size == 64
    assert cfg.sft.min_lr_rate == 0.1 and cfg.sft.warmup_ratio == 0.1 and cfg.sft.max_length == 16384
    assert cfg.rl.group_size == 8 and cfg.rl.learning_rate == 1e-6 and cfg.rl.steps == 400
    assert cfg.eval.n == 128 and cfg.grading.timeout_s == 10


def test_unknown_key_names_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"sample\.temprature: Extra inputs"):
        load_config(write(tmp_path, "sample: {temprature: 0.5}\n"))


def test_bad_value_names_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"filter\.n: "):
        load_config(write(tmp_path, "filter: {n: 0}\n"))
    with pytest.raises(ConfigError, match=r"data\.train"):
        load_config(write(tmp_path, "data: {train: {kind: file}}\n"))


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, "sample: {n: 2}\n"), ["sample.n=8", "eval.ks=[1, 2]", "eval.n=4",
                                                           "propose.proposer.kind=self"])
    assert cfg.sample.n == 8 and cfg.eval.ks == [1, 2]


def test_override_of_unknown_field_fails(tmp_path):
    with pytest.raises(ConfigError, match=r"nope: Extra inputs"):
        load_config(None, ["nope.x=1"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
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


def test_fingerprint_changes_with_section():
    a, b = Config(), load_config(None, ["sample.n=5"])
    assert fingerprint(a.sample) != fingerprint(b.sample)
    assert fingerprint(a.sample, "x") == fingerprint(Config().sample, "x")

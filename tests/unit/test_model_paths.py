"""Which model specs are refused before transformers sees them, and which pass through (hub ids)."""

from __future__ import annotations

import pytest

from intrain.config import ConfigError
from intrain.models import EMBEDDED, check_model_path, resolve_model_path


@pytest.mark.parametrize("spec", ["Qwen/Qwen3-4B-Instruct-2507", "gpt2", "models/my-run", "org/name.v1_2-x"])
def test_hub_ids_pass_through_unchanged(spec):
    check_model_path(spec, "model.path")
    assert resolve_model_path(spec) == spec


def test_embedded_and_existing_folders_pass(tmp_path, monkeypatch):
    check_model_path(EMBEDDED, "model.path")  # no conversion here
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    check_model_path("~/m", "model.path")
    assert resolve_model_path(str(tmp_path / "m")) == str(tmp_path / "m")


@pytest.mark.parametrize("spec", ["/nope/model", "./model", "../model", "~/no-such-model", "a/b/c", "..\\m"])
def test_missing_paths_name_the_field_and_the_path(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^model\.path: local folder .* does not exist$") as err:
        check_model_path(spec, "model.path")
    assert spec in str(err.value)


def test_a_file_and_a_malformed_id_are_refused(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^model\.path: .*model\.safetensors is a file"):
        check_model_path(str(weights), "model.path")
    with pytest.raises(ConfigError, match=r"neither a local folder nor a hub id"):
        check_model_path("my model", "model.path")
    with pytest.raises(ConfigError, match=r"^--model: unknown embedded model 'embedded:gpt5'"):
        check_model_path("embedded:gpt5", "--model")


def test_resolve_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^propose\.proposer\.model\.path: local folder"):
        resolve_model_path(str(tmp_path / "nope"), "propose.proposer.model.path")

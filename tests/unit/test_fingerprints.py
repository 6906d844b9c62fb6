"""Each stage's fingerprint moves with exactly the config fields it declares."""

import json
import os
import sys
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from intrain.config import Config, Section
from intrain.fingerprints import ALL_STAGES, NOT_STAGE_INPUTS, StageInputs, fingerprint, producer_hash


def _section_type(annotation) -> type[Section] | None:
    """The Section class behind `X`, `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        found = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, Section)]
        return found[0] if found else None
    return None


def leaf_fields(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every leaf field of the config schema, including those under sections that default to None."""
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        section = _section_type(info.annotation)
        out += leaf_fields(section, f"{path}.") if section else [path]
    return out


LEAVES = leaf_fields()


def _materialise(raw: dict, path: str) -> None:
    """Give every None section on `path` its default value, so the leaf exists."""
    node, model = raw, Config
    for part in path.split(".")[:-1]:
        section = _section_type(model.model_fields[part].annotation)
        if node.get(part) is None:
            node[part] = section().model_dump(mode="json")
        node, model = node[part], section


def _perturbed_values(value, annotation):
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value / 2 if value else 0.5, min(value + 0.05, 0.99)]
    if isinstance(value, str):
        choices = [a for a in typing.get_args(annotation) if isinstance(a, str) and a != value]
        return choices or [value + "x", value + "{problem}"]
    if isinstance(value, list):
        # A list of literals (output.report_to) also gets each literal alone.
        items = typing.get_args(annotation)
        literals = [[a] for a in typing.get_args(items[0]) if isinstance(a, str)] if items else []
        return [value + value[-1:] if value else ["x"], value[:-1], [1, 2], *literals]
    if isinstance(value, dict):
        return [{**value, "x": "y"}, {**value, "x": 1}]
    if value is None:
        return [7, "x", 0.5, {"x": "y"}, True, [1]]
    raise AssertionError(f"no perturbation for {value!r}")


# Fields whose other values are valid only together with another field: set that one in the baseline.
# path -> (the section to set them in, the values).
_BASELINE_NEEDS = {
    "propose.proposer.kind": ("propose.proposer", {"base_url": "http://127.0.0.1:9/v1", "name": "proposer"}),
    "model.train_adapter": ("model", {"adapter": "/adapter"}),
}
# Leaves with a single valid value, which no config can perturb (tests/unit/test_config.py checks the refusal).
_ONE_VALUE = {"propose.proposer.model.train_adapter": "the proposer is never trained: only false is valid"}


@pytest.fixture(autouse=True)
def trackers_importable(monkeypatch):
    """output.report_to accepts a tracker only when its package imports; stand-ins make every value valid."""
    import importlib.machinery

    for name in ("tensorboard", "wandb", "trackio"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)


def perturbed(path: str) -> tuple[Config, Config]:
    """(baseline, config differing from it in `path` alone), both valid."""
    raw = Config().model_dump(mode="json")
    _materialise(raw, path)
    if path in _BASELINE_NEEDS:
        section, values = _BASELINE_NEEDS[path]
        node = raw
        for part in section.split("."):
            node = node[part]
        node.update(values)
    base = Config.model_validate(raw)
    parent = raw
    parts = path.split(".")
    for part in parts[:-1]:
        parent = parent[part]
    model = Config
    for part in parts[:-1]:
        model = _section_type(model.model_fields[part].annotation)
    annotation = model.model_fields[parts[-1]].annotation
    for candidate in _perturbed_values(parent[parts[-1]], annotation):
        parent[parts[-1]] = candidate
        try:
            changed = Config.model_validate(raw)
        except Exception:
            continue
        if changed.model_dump(mode="json") != base.model_dump(mode="json"):
            return base, changed
    raise AssertionError(f"could not perturb {path}")


def declares(inputs: StageInputs, path: str) -> bool:
    return any(path == d or path.startswith(d + ".") for d in inputs.config)


def excluded(path: str) -> bool:
    return any(path == e or path.startswith(e + ".") for e in NOT_STAGE_INPUTS)


def test_every_leaf_is_an_input_or_listed_as_none():
    orphans = [p for p in LEAVES if not excluded(p) and not any(declares(s, p) for s in ALL_STAGES.values())]
    assert not orphans, f"config fields neither declared by a stage nor in NOT_STAGE_INPUTS: {orphans}"
    both = [
        p
        for p in LEAVES
        if excluded(p)
        and any(declares(s, p) for s in ALL_STAGES.values())
        and not any(p == e for e in NOT_STAGE_INPUTS)
    ]
    assert not both, both


def test_declarations_name_real_fields():
    sections = {p.rsplit(".", i)[0] for p in LEAVES for i in range(p.count(".") + 1)}
    for stage, inputs in ALL_STAGES.items():
        unknown = [d for d in inputs.config if d not in sections]
        assert not unknown, f"{stage} declares unknown fields {unknown}"
    assert all(e in sections for e in NOT_STAGE_INPUTS)


@pytest.mark.parametrize("path", [p for p in LEAVES if p not in _ONE_VALUE])
def test_perturbing_a_field_moves_exactly_the_stages_that_declare_it(path):
    base, changed = perturbed(path)
    moved = {
        name
        for name, inputs in ALL_STAGES.items()
        if fingerprint(inputs, base, None) != fingerprint(inputs, changed, None)
    }
    expected = set() if excluded(path) else {n for n, inputs in ALL_STAGES.items() if declares(inputs, path)}
    assert moved == expected


def _finish(run: Path, name: str, digest: str) -> None:
    (run / name).mkdir(parents=True, exist_ok=True)
    (run / name / "manifest.json").write_text(json.dumps({"status": "complete", "config_hash": digest}))


def test_upstream_fingerprints_chain(tmp_path):
    config = Config()
    _finish(tmp_path, "sample", "aaa")
    before = fingerprint(ALL_STAGES["propose"], config, tmp_path)
    _finish(tmp_path, "sample", "bbb")
    assert fingerprint(ALL_STAGES["propose"], config, tmp_path) != before
    assert fingerprint(ALL_STAGES["sample"], config, tmp_path) == fingerprint(ALL_STAGES["sample"], config, None)


def test_producer_hash_reads_the_stage_that_wrote_a_checkpoint(tmp_path):
    (tmp_path / "sft" / "model").mkdir(parents=True)
    _finish(tmp_path, "sft", "abc")
    assert producer_hash(str(tmp_path / "sft" / "model")) == "abc"
    assert producer_hash("embedded:smollm2") is None and producer_hash(None) is None


def test_arguments_enter_the_fingerprint():
    config = Config()
    eval_inputs = ALL_STAGES["eval"]
    assert fingerprint(eval_inputs, config, None, target="a") != fingerprint(eval_inputs, config, None, target="b")


def test_rl_declares_its_inputs_by_data_mode(tmp_path):
    from intrain.fingerprints import RL, RL_COVERED, RL_SOURCE, rl_inputs

    train = Config()
    source = Config.model_validate({"rl": {"data": {"kind": "hf", "name": "CMU-AIRe/InT-RL"}}})
    covered = Config.model_validate({"rl": {"data": "covered"}})
    assert rl_inputs(train.rl) is RL and rl_inputs(source.rl) is RL_SOURCE and rl_inputs(covered.rl) is RL_COVERED
    assert ALL_STAGES["rl"] is RL and ALL_STAGES["rl:source"] is RL_SOURCE and ALL_STAGES["rl:covered"] is RL_COVERED
    # Only 'covered' reads the filter stage, so only it moves when the filter stage is redone.
    _finish(tmp_path, "filter", "aaa")
    configs = (train, source, covered)
    before = [fingerprint(rl_inputs(c.rl), c, tmp_path) for c in configs]
    _finish(tmp_path, "filter", "bbb")
    after = [fingerprint(rl_inputs(c.rl), c, tmp_path) for c in configs]
    assert [b == a for b, a in zip(before, after, strict=True)] == [True, True, False]


def test_the_content_behind_an_adapter_or_a_template_enters_the_fingerprint(tmp_path):
    from intrain.fingerprints import PROPOSE, SAMPLE, SFT

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    template = tmp_path / "verify.jinja"
    template.write_text("Check {{ attempt }}")
    cfg = Config.model_validate({"model": {"adapter": str(adapter)}, "propose": {"template": str(template)}})

    def prints() -> dict[str, str]:
        return {
            name: fingerprint(inputs, cfg, None)
            for name, inputs in (("sample", SAMPLE), ("sft", SFT), ("propose", PROPOSE))
        }

    first = prints()
    (adapter / "README.md").write_text("a model card")  # not what PEFT loads
    assert prints() == first
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # rebuilt in place, same path
    rebuilt = prints()
    assert all(rebuilt[name] != first[name] for name in first)
    template.write_text("Check the attempt {{ attempt }}")  # only propose reads the template
    edited = prints()
    assert edited["propose"] != rebuilt["propose"]
    assert (edited["sample"], edited["sft"]) == (rebuilt["sample"], rebuilt["sft"])


def test_a_packaged_template_edited_between_releases_redoes_propose(monkeypatch):
    import intrain.prompts
    from intrain.fingerprints import PROPOSE, SAMPLE

    plain = Config()  # propose.template: paper, a packaged one
    before = fingerprint(PROPOSE, plain, None), fingerprint(SAMPLE, plain, None)
    real = intrain.prompts.template_source
    monkeypatch.setattr(intrain.prompts, "template_source", lambda name: real(name) + " (edited)")
    assert fingerprint(PROPOSE, plain, None) != before[0]
    assert fingerprint(SAMPLE, plain, None) == before[1]


def test_a_problem_file_rewritten_under_the_same_name_redoes_the_stages_that_read_it(tmp_path):
    from intrain.fingerprints import EVAL, PROPOSE, RL_SOURCE, SAMPLE

    train, held_out = tmp_path / "train.jsonl", tmp_path / "eval"
    train.write_text('{"problem": "1+1", "answer": "2"}\n')
    held_out.mkdir()  # a local dataset folder (`kind: hf` with a path)
    (held_out / "data.jsonl").write_text('{"problem": "2+2", "answer": "4"}\n')
    cfg = Config.model_validate(
        {
            "data": {"train": {"kind": "file", "path": str(train)}, "eval": {"kind": "hf", "name": str(held_out)}},
            "rl": {"data": {"kind": "file", "path": str(train)}},
        }
    )

    def prints() -> dict[str, str]:
        stages = (("sample", SAMPLE), ("eval", EVAL), ("propose", PROPOSE), ("rl", RL_SOURCE))
        return {name: fingerprint(inputs, cfg, None) for name, inputs in stages}

    first = prints()
    assert prints() == first
    train.write_text('{"problem": "1+1", "answer": "3"}\n')  # a corrected answer, same file name
    fixed = prints()
    # eval declares data.train too: it scores the training problems when data.eval is null
    assert [fixed[n] != first[n] for n in first] == [True, True, False, True]
    (held_out / "data.jsonl").write_text('{"problem": "2+2", "answer": "5"}\n')
    edited = prints()
    assert [edited[n] != fixed[n] for n in first] == [False, True, False, False]


def test_generated_and_hub_sources_have_no_content_to_digest():
    from intrain.fingerprints import _source_digest

    assert _source_digest({"kind": "arithmetic", "path": None}) is None
    assert _source_digest({"kind": "hf", "name": "CMU-AIRe/InT-RL"}) is None
    assert _source_digest({"kind": "file", "path": "/no/such/file.jsonl"}) is None  # the loader reports it
    assert _source_digest("covered") is None and _source_digest(None) is None


def test_a_large_data_source_is_read_once_per_process_until_it_changes(tmp_path, monkeypatch):
    import intrain.fingerprints as fp

    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1", "answer": "2"}\n')
    source = {"kind": "file", "path": str(data)}
    stamp = data.stat().st_mtime_ns

    def rewrite_keeping_stamp(text: str) -> None:
        data.write_text(text)
        os.utime(data, ns=(stamp, stamp))

    first = fp._source_digest(source)
    rewrite_keeping_stamp('{"problem": "1+1", "answer": "3"}\n')  # same size, same mtime
    small = fp._source_digest(source)
    assert small != first  # below the threshold every call reads the bytes

    monkeypatch.setattr(fp, "MEMO_MIN_BYTES", 0)
    monkeypatch.setattr(fp, "_SOURCE_DIGESTS", {})
    remembered = fp._source_digest(source)
    rewrite_keeping_stamp('{"problem": "1+1", "answer": "2"}\n')
    assert fp._source_digest(source) == remembered  # size and mtime unchanged: not read again
    data.write_text('{"problem": "1+1", "answer": "22"}\n')  # size changed
    assert fp._source_digest(source) not in (remembered, first)

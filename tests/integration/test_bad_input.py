"""Bad input never loses data: the catalogue of a new user's mistakes.

Each case runs the real CLI entry (`intrain.cli.main`) on a tiny config and must end in exit status 2,
exactly one line on stderr (`error: <where>: <what is wrong>`) naming the field, row or file, nothing
on stdout, and no partial output: no new shard, no manifest marked complete, no half-written
temporary file. A case builds its inputs under `tmp_path` and returns the command line and the
fragments its error line must contain. Every error here comes before any model generates.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from tiny_configs import write_config

from intrain.cli import main
from intrain.store import Stage


@dataclass
class Env:
    """What a case may use to build its inputs."""

    tmp_path: Path
    model_dir: str
    monkeypatch: pytest.MonkeyPatch
    cleanups: list[Callable[[], object]] = field(default_factory=list)  # run after the command

    @property
    def run_dir(self) -> Path:
        return self.tmp_path / "run"

    def config(self, **sections) -> str:
        """The tiny config (arithmetic data, the tiny model, run dir tmp/run) with `sections` merged in."""
        return write_config(self.tmp_path, self.model_dir, **sections)

    def data_config(self, name: str, content: str | bytes, **source) -> str:
        """The tiny config training on a data file `name` holding `content`."""
        path = self.tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return self.config(data={"train": {"kind": "file", "path": str(path), **source}})

    def raw_config(self, text: str) -> str:
        path = self.tmp_path / "config.yaml"
        path.write_text(text)
        return str(path)


# A case: Env -> (argv, fragments the error line must contain).
Case = Callable[[Env], tuple[list[str], list[str]]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD_ROWS = ({"id": "a", "problem": "1 + 1?", "answer": "2"}, {"id": "b", "problem": "2 + 3?", "answer": "5"})


# -- the config file and --set ------------------------------------------------------------------------------
@case
def malformed_yaml(env):
    return ["sample", env.raw_config("sample: [\n")], ["config.yaml", "not valid YAML"]


@case
def config_top_level_not_a_mapping(env):
    return ["sample", env.raw_config("- 1\n")], ["config.yaml", "top level must be a mapping"]


@case
def config_file_missing(env):
    return ["sample", str(env.tmp_path / "nope.yaml")], ["config not found", "nope.yaml"]


@case
def unknown_key(env):
    return ["sample", env.config(sample={"temprature": 0.5})], ["sample.temprature", "Extra inputs"]


@case
def wrong_type(env):
    return ["sample", env.config(sample={"n": "many"})], ["sample.n", "integer"]


@case
def value_out_of_range(env):
    return ["sample", env.config(filter={"n": 0})], ["filter.n", "greater than or equal to 1"]


@case
def inconsistent_fields(env):
    return ["sample", env.config(filter={"n": 2, "min_correct": 3})], ["filter", "min_correct cannot exceed n"]


@case
def file_source_without_path(env):
    return ["sample", env.config(data={"train": {"kind": "file"}})], ["data.train", "needs 'path'"]


@case
def prompt_template_without_problem(env):
    return ["sample", env.config(data={"prompt_template": "solve it"})], ["data", "prompt_template"]


@case
def set_on_a_field_that_does_not_exist(env):
    return ["sample", env.config(), "--set", "sample.nope=1"], ["sample.nope", "Extra inputs"]


@case
def set_on_a_section_that_does_not_exist(env):
    return ["sample", env.config(), "--set", "nope.x=1"], ["nope", "Extra inputs"]


@case
def set_without_a_value(env):
    return ["sample", env.config(), "--set", "sample.n"], ["--set 'sample.n'", "expected dotted.key=value"]


@case
def set_below_a_leaf(env):
    return ["sample", env.config(sample={"n": 2}), "--set", "sample.n.x=1"], [
        "--set 'sample.n.x=1'",
        "sample.n is not a section",
    ]


# -- the data file --------------------------------------------------------------------------------------------
@case
def data_file_missing(env):
    missing = env.tmp_path / "nope.jsonl"
    return ["sample", env.config(data={"train": {"kind": "file", "path": str(missing)}})], [str(missing), "not found"]


@case
def data_path_is_a_folder(env):
    folder = env.tmp_path / "problems.jsonl"
    folder.mkdir()
    return ["sample", env.config(data={"train": {"kind": "file", "path": str(folder)}})], [
        str(folder),
        "not a regular file",
    ]


@case
def data_file_unsupported_extension(env):
    return ["sample", env.data_config("problems.txt", "1 + 1 = 2\n")], ["problems.txt", "unsupported file extension"]


@case
def mapped_column_missing(env):
    argv = ["sample", env.data_config("p.jsonl", jsonl(*GOOD_ROWS), columns={"problem": "question"})]
    return argv, ["p.jsonl", "column 'question'", "field 'problem'", "available columns"]


@case
def required_column_missing(env):
    rows = [{"id": "a", "problem": "1 + 1?", "solution": "2"}]
    return ["sample", env.data_config("p.jsonl", jsonl(*rows))], ["p.jsonl", "required column 'answer'"]


@case
def column_mapping_names_an_unknown_field(env):
    argv = ["sample", env.data_config("p.jsonl", jsonl(*GOOD_ROWS), columns={"question": "problem"})]
    return argv, ["p.jsonl", "unknown field(s) in column mapping: question"]


@case
def empty_dataset(env):
    return ["sample", env.data_config("p.jsonl", "\n")], ["p.jsonl", "no problems"]


@case
def every_row_skipped(env):
    rows = [{"id": "a", "problem": "1 + 1?", "answer": ""}, {"id": "b", "problem": "", "answer": "3"}]
    argv = ["sample", env.data_config("p.jsonl", jsonl(*rows)), "--set", "data.on_invalid=skip"]
    return argv, ["p.jsonl", "no problems left", "all 2 rows were invalid"]


@case
def duplicate_problem_ids(env):
    rows = [*GOOD_ROWS, {"id": "a", "problem": "3 + 3?", "answer": "6"}]
    return ["sample", env.data_config("p.jsonl", jsonl(*rows))], ["p.jsonl", "duplicate ids: a"]


@case
def empty_answer(env):
    rows = [GOOD_ROWS[0], {"id": "b", "problem": "2 + 3?", "answer": " "}]
    return ["sample", env.data_config("p.jsonl", jsonl(*rows))], ["p.jsonl", "field 'answer'", "ids b"]


@case
def non_utf8_jsonl(env):
    # Latin-1 "é" (0xe9) on line 2, at byte offset len(line 1) + 23.
    first = jsonl(GOOD_ROWS[0]).encode()
    content = first + b'{"id": "b", "problem": "caf\xe9 + 1?", "answer": "2"}\n'
    offset = len(first) + content[len(first) :].index(b"\xe9")
    return ["sample", env.data_config("p.jsonl", content)], [
        "p.jsonl",
        "line 2",
        f"offset {offset}",
        "0xe9",
        "not UTF-8",
    ]


@case
def non_utf8_jsonl_after_a_byte_order_mark(env):
    # The offset counts the file's bytes, the mark included.
    content = b"\xef\xbb\xbf" + b'{"id": "a", "problem": "\xff", "answer": "2"}\n'
    offset = content.index(b"\xff")
    return ["sample", env.data_config("p.jsonl", content)], [f"offset {offset}", "0xff", "line 1"]


@case
def non_utf8_csv(env):
    content = b"id,problem,answer\na,1 + 1?,2\nb,na\xefve,3\n"
    return ["sample", env.data_config("p.csv", content)], ["p.csv", "line 3", "0xef", "not UTF-8"]


@case
def non_utf8_json(env):
    content = b'[\n {"id": "a", "problem": "\x80", "answer": "2"}\n]\n'
    return ["sample", env.data_config("p.json", content)], ["p.json", "line 2", "0x80", "not UTF-8"]


@case
def malformed_json_line(env):
    content = jsonl(GOOD_ROWS[0]) + '{"id": "b", "problem": "2 + 3?", "answer": }\n'
    return ["sample", env.data_config("p.jsonl", content)], ["p.jsonl", "line 2", "malformed JSON"]


@case
def jsonl_line_not_an_object(env):
    content = jsonl(GOOD_ROWS[0]) + "[1, 2]\n"
    return ["sample", env.data_config("p.jsonl", content)], ["p.jsonl", "line 2", "expected a JSON object"]


@case
def json_not_a_list(env):
    return ["sample", env.data_config("p.json", json.dumps(GOOD_ROWS[0]))], ["p.json", "expected a JSON list"]


@case
def csv_row_with_extra_fields(env):
    content = "id,problem,answer\na,1 + 1?,2\nb,2 + 3?,5,oops\n"
    return ["sample", env.data_config("p.csv", content)], ["p.csv", "line 3", "more fields"]


@case
def corrupt_parquet(env):
    return ["sample", env.data_config("p.parquet", b"PAR1 not really")], ["p.parquet", "cannot read parquet"]


# -- models ---------------------------------------------------------------------------------------------------
@case
def model_path_missing(env):
    missing = str(env.tmp_path / "models" / "my-model")
    return ["sample", env.config(model={"path": missing})], ["model.path", missing, "does not exist"]


@case
def model_path_missing_relative(env):
    env.monkeypatch.chdir(env.tmp_path)
    return ["sample", env.config(model={"path": "./my-model"})], ["model.path", "./my-model", "does not exist"]


@case
def model_path_missing_under_home(env):
    env.monkeypatch.setenv("HOME", str(env.tmp_path))
    return ["sample", env.config(model={"path": "~/my-model"})], ["model.path", "~/my-model", "does not exist"]


@case
def model_path_is_a_file(env):
    weights = env.tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    return ["sample", env.config(model={"path": str(weights)})], ["model.path", str(weights), "is a file"]


@case
def model_path_neither_folder_nor_hub_id(env):
    return ["sample", env.config(model={"path": "my model"})], ["model.path", "'my model'", "hub id"]


@case
def model_path_unknown_embedded(env):
    return ["sample", env.config(model={"path": "embedded:gpt5"})], ["model.path", "embedded:gpt5", "embedded:smollm2"]


@case
def model_hub_id_unreachable(env):
    # A well-formed hub id that is not in the cache, offline: transformers' OSError, as one line.
    import huggingface_hub.constants

    env.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env.monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub_id = "intrain-tests/no-such-model"
    return ["sample", env.config(model={"path": hub_id})], ["model.path", "cannot load the tokenizer of", hub_id]


@case
def tokenizer_without_chat_template(env):
    plain = env.tmp_path / "plain-model"
    shutil.copytree(env.model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tok_config = json.loads((plain / "tokenizer_config.json").read_text())
    tok_config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return ["sample", env.config(model={"path": str(plain)})], ["model.path", str(plain), "no chat template"]


@case
def adapter_missing(env):
    missing = str(env.tmp_path / "adapter")
    return ["sample", env.config(model={"adapter": missing})], ["model.adapter", missing, "does not exist"]


@case
def proposer_model_path_missing(env):
    missing = str(env.tmp_path / "proposer")
    argv = ["propose", env.config(propose={"proposer": {"kind": "model", "model": {"path": missing}}})]
    return argv, ["propose.proposer.model.path", missing, "does not exist"]


@case
def eval_checkpoint_missing(env):
    missing = str(env.tmp_path / "run" / "sft" / "model")
    return ["eval", env.config(), "--model", missing], ["--model", missing, "does not exist"]


# -- the run directory --------------------------------------------------------------------------------------
@case
def run_dir_under_a_file(env):
    # A folder cannot be made below a regular file, for root too.
    blocker = env.tmp_path / "blocker"
    blocker.write_text("")
    run_dir = str(blocker / "run")
    return ["sample", env.config(output={"run_dir": run_dir})], ["output.run_dir", run_dir, "Not a directory"]


@case
def run_dir_flag_is_a_file(env):
    blocker = env.tmp_path / "blocker"
    blocker.write_text("")
    return ["sample", env.config(), "--run-dir", str(blocker)], ["--run-dir", str(blocker), "is a file"]


@case
def run_dir_not_writable(env):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder; run_dir_under_a_file covers root")
    parent = env.tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    env.cleanups.append(lambda: parent.chmod(0o700))
    run_dir = str(parent / "run")
    return ["sample", env.config(output={"run_dir": run_dir})], ["output.run_dir", run_dir, "Permission denied"]


@case
def run_dir_in_use(env):
    # Held through a second open file: flock refuses it even in the same process.
    from intrain.store import lock_run_dir

    lock = lock_run_dir(env.run_dir)
    lock.__enter__()
    env.cleanups.append(lambda: lock.__exit__(None, None, None))
    return ["sample", env.config()], [
        f"run directory {env.run_dir} is in use by another intrain process (pid {os.getpid()})"
    ]


@case
def disk_full(env):
    # The atomic writer's fsync fails as on a full disk: its temporary file is half written by then.
    import intrain.store

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    env.monkeypatch.setattr(intrain.store.os, "fsync", full)
    manifest = env.run_dir / "sample" / "manifest.json"
    return ["sample", env.config()], [f"cannot write {manifest}", "No space left on device", "re-run"]


@case
def stage_produced_by_another_config(env):
    # Shards from another config are refused, and kept.
    Stage(env.run_dir, "sample", "another-config").write_shard(0, [{"a": 1}])
    return ["sample", env.config()], ["stage 'sample'", "different config", "--force"]


def _outputs(run_dir: Path) -> dict[str, bytes]:
    """Every shard, complete manifest and temporary file under the run dir, with its bytes."""
    found: dict[str, bytes] = {}
    if not run_dir.exists():
        return found
    for path in run_dir.rglob("*"):
        if not path.is_file():
            continue
        complete = path.name == "manifest.json" and json.loads(path.read_text()).get("status") == "complete"
        if path.name.startswith("shard-") or path.name.endswith(".tmp") or complete:
            found[str(path.relative_to(run_dir))] = path.read_bytes()
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, tiny_model_dir, monkeypatch, capsys):
    env = Env(tmp_path, tiny_model_dir, monkeypatch)
    argv, fragments = CASES[name](env)
    before = _outputs(env.run_dir)
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        for cleanup in env.cleanups:
            cleanup()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert out == ""
    assert _outputs(env.run_dir) == before, "a failed run wrote or removed output"


def test_the_catalogue_is_complete():
    assert len(CASES) >= 30


def test_corrected_run_after_a_failure_is_not_refused(tmp_path, tiny_model_dir, capsys):
    """A stage that failed before writing anything must not block the corrected run as 'a different config'."""
    missing = tmp_path / "problems.jsonl"
    tiny = {"n": 1, "max_tokens": 4, "shard_size": 2}
    bad = write_config(tmp_path, tiny_model_dir, sample=tiny, data={"train": {"kind": "file", "path": str(missing)}})
    assert main(["sample", bad]) == 2
    assert "not found" in capsys.readouterr().err
    good = write_config(tmp_path, tiny_model_dir, sample=tiny, data={"train": {"kind": "arithmetic", "size": 2}})
    assert main(["sample", good]) == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "run" / "sample" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["problems"] == 2


def test_location_out_of_range_is_a_status_count(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """A proposer naming a substep the attempt does not have is counted as bad_location, not a crash."""
    from intrain.stages import common

    real = common.build_generator

    class OutOfRangeProposer:
        def __init__(self, inner):
            self.inner = inner
            self.tokenizer = inner.tokenizer

        def generate(self, requests, sampling, on_progress=None):
            if not any("Student Attempt" in r.messages[-1]["content"] for r in requests):
                return self.inner.generate(requests, sampling, on_progress)
            text = '<intervention>\n{"content": "Redo the first operation.", "location": 99}\n</intervention>'
            return [[_completion(text) for _ in range(r.n)] for r in requests]

    monkeypatch.setattr(common, "build_generator", lambda *a, **k: OutOfRangeProposer(real(*a, **k)))
    config = write_config(
        tmp_path,
        tiny_model_dir,
        sample={"n": 2, "max_tokens": 8, "shard_size": 4},
        propose={"n": 2, "template": "compact", "max_prompt_tokens": 4096, "max_tokens": 8},
    )
    assert main(["sample", config]) == 0 and main(["propose", config]) == 0, capsys.readouterr().err
    counts = json.loads((tmp_path / "run" / "propose" / "manifest.json").read_text())["counts"]
    assert counts["proposals"] > 0 and counts["bad_location"] == counts["proposals"] and counts["ok"] == 0


def _completion(text: str):
    from intrain.engines.base import Completion

    return Completion(text=text, token_ids=[1, 2], finish_reason="stop", logprobs=None, prompt_tokens=3)


def test_catalogue_configs_are_valid_yaml(tmp_path, tiny_model_dir):
    """The base config the catalogue perturbs is itself valid (so each case fails for its own reason)."""
    from intrain.config import load_config

    path = write_config(tmp_path, tiny_model_dir)
    assert yaml.safe_load(Path(path).read_text())["model"]["path"] == tiny_model_dir
    load_config(path)

"""Problem loaders: local files, HF datasets via local paths, CHAMP, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intrain.data import champ as champ_mod
from intrain.data.champ import load_champ, load_champ_annotations
from intrain.data.files import load_file
from intrain.data.hub import load_hf
from intrain.data.problem import DataError, Problem, rows_to_problems, to_text, validate_problems

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
FORMATS = ["jsonl", "json", "csv", "parquet"]
CHAMP_JSON = FIX / "champ" / "champ_dataset" / "dataset_files" / "v0.json"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- local files


@pytest.mark.parametrize("ext", FORMATS)
def test_load_file_all_formats(ext: str) -> None:
    probs = load_file(FIX / f"int_hard_set.{ext}")
    assert len(probs) == 12
    assert all(isinstance(p, Problem) for p in probs)
    # no id column in the InT hard-set schema -> "{stem}-{row_index}"
    assert [p.id for p in probs] == [f"int_hard_set-{i}" for i in range(12)]
    assert probs[0].answer == "81"
    assert probs[0].source == "aime"
    assert probs[0].problem.startswith("Find the number of ordered pairs")
    assert probs[0].reference_solution.endswith("\\boxed{81}$.")
    # numbers in the answer column become plain strings
    assert probs[2].answer == "45"
    assert probs[3].answer == "2870"
    assert probs[4].answer == "\\frac{21}{64}"
    # empty reference_solution falls back to the solution column
    assert probs[3].reference_solution.startswith("Use $\\sum k^2")
    # both empty -> allowed, empty
    assert probs[11].reference_solution == ""


def test_all_formats_agree() -> None:
    loaded = {ext: load_file(FIX / f"int_hard_set.{ext}") for ext in FORMATS}
    assert loaded["json"] == loaded["jsonl"] == loaded["csv"] == loaded["parquet"]


def test_int_answers_are_not_floats(tmp_path: Path) -> None:
    f = tmp_path / "nums.jsonl"
    f.write_text(
        '{"problem": "p1", "answer": 42}\n{"problem": "p2", "answer": 42.0}\n{"problem": "p3", "answer": 2.5}\n'
    )
    assert [p.answer for p in load_file(f)] == ["42", "42", "2.5"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = tmp_path / "nums.parquet"
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": [42.0, 7.0]}), pf)
    assert [p.answer for p in load_file(pf)] == ["42", "7"]
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": pa.array([42, 7], pa.int64())}), pf)
    assert [p.answer for p in load_file(pf)] == ["42", "7"]


def test_to_text() -> None:
    assert to_text(None) == ""
    assert to_text(3) == "3"
    assert to_text(3.0) == "3"
    assert to_text(float("nan")) == ""
    assert to_text("  x ") == "x"
    assert to_text(["step 1", "step 2"]) == "step 1\n\nstep 2"


def test_source_default_and_override(tmp_path: Path) -> None:
    f = tmp_path / "mini.jsonl"
    f.write_text('{"problem": "p", "answer": "1"}\n{"problem": "q", "answer": "2", "source": "amc"}\n')
    probs = load_file(f)
    assert [p.source for p in probs] == ["mini", "amc"]
    probs = load_file(f, source="mine")
    assert [p.source for p in probs] == ["mine", "amc"]  # a source column wins per row


def test_column_mapping(tmp_path: Path) -> None:
    f = tmp_path / "custom.csv"
    f.write_text("uid,question,final,worked\nq1,What is 2+2?,4,2+2=4\nq2,What is 3*3?,9,\n")
    probs = load_file(
        f,
        columns={"id": "uid", "problem": "question", "answer": "final", "reference_solution": "worked"},
        source="toy",
    )
    assert probs == [
        Problem("q1", "What is 2+2?", "4", "2+2=4", "toy"),
        Problem("q2", "What is 3*3?", "9", "", "toy"),
    ]


def test_mapped_column_missing_names_column_and_file() -> None:
    path = FIX / "int_hard_set.jsonl"
    with pytest.raises(DataError) as err:
        load_file(path, columns={"problem": "question"})
    msg = _one_line(err)
    assert "'question'" in msg and "int_hard_set.jsonl" in msg and "problem" in msg
    with pytest.raises(DataError) as err:
        load_file(FIX / "int_hard_set.parquet", columns={"answer": "final_answer"})
    assert "'final_answer'" in _one_line(err) and "int_hard_set.parquet" in str(err.value)
    with pytest.raises(DataError, match="unknown field"):
        load_file(path, columns={"question": "problem"})


def test_required_column_absent(tmp_path: Path) -> None:
    f = tmp_path / "noanswer.csv"
    f.write_text("problem,solution\nWhat?,Because.\n")
    with pytest.raises(DataError) as err:
        load_file(f)
    msg = _one_line(err)
    assert "'answer'" in msg and "noanswer.csv" in msg


def test_missing_file_and_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as err:
        load_file(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in _one_line(err)
    bad = tmp_path / "data.txt"
    bad.write_text("hello")
    with pytest.raises(DataError, match=r"unsupported file extension '\.txt'"):
        load_file(bad)


def test_malformed_jsonl_names_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.jsonl"
    f.write_text('{"problem": "a", "answer": "1"}\n\n{"problem": "b", "answer": \n{"problem": "c", "answer": "3"}\n')
    with pytest.raises(DataError) as err:
        load_file(f)
    msg = _one_line(err)
    assert "broken.jsonl" in msg and "line 3" in msg
    f.write_text('{"problem": "a", "answer": "1"}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        load_file(f)


def test_malformed_json_and_wrong_shape(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text('[{"problem": "a", "answer": "1"},\n {"problem": ')
    with pytest.raises(DataError, match=r"broken\.json: malformed JSON at line 2"):
        load_file(f)
    f.write_text('{"problem": "a"}')
    with pytest.raises(DataError, match="expected a JSON list"):
        load_file(f)


def test_csv_ragged_row(tmp_path: Path) -> None:
    f = tmp_path / "ragged.csv"
    f.write_text("problem,answer\na,1\nb,2,extra\n")
    with pytest.raises(DataError, match=r"ragged\.csv: line 3"):
        load_file(f)


def test_corrupt_parquet(tmp_path: Path) -> None:
    f = tmp_path / "corrupt.parquet"
    f.write_bytes(b"not a parquet file")
    with pytest.raises(DataError) as err:
        load_file(f)
    assert "corrupt.parquet" in _one_line(err)


# --------------------------------------------------------------------------- validation


def _rows(n_bad: int) -> list[Problem]:
    good = [Problem(f"g{i}", f"problem {i}", str(i), "", "s") for i in range(3)]
    bad = [Problem(f"b{i}", "" if i % 2 else f"problem b{i}", "" if i % 2 == 0 else "7", "", "s") for i in range(n_bad)]
    return good + bad


def test_validate_skip_counts() -> None:
    valid, skipped = validate_problems(_rows(4), on_invalid="skip", origin="toy.jsonl")
    assert [p.id for p in valid] == ["g0", "g1", "g2"]
    assert skipped == ["b0", "b1", "b2", "b3"]
    valid, skipped = validate_problems(_rows(0), on_invalid="skip", origin="toy.jsonl")
    assert len(valid) == 3 and skipped == []


def test_validate_error_names_origin_ids_and_field() -> None:
    with pytest.raises(DataError) as err:
        validate_problems(_rows(2), on_invalid="error", origin="toy.jsonl")
    msg = _one_line(err)
    assert "toy.jsonl" in msg and "b0" in msg and "b1" in msg
    assert "problem" in msg and "answer" in msg


def test_validate_error_lists_first_ten_and_count() -> None:
    with pytest.raises(DataError) as err:
        validate_problems(_rows(25), on_invalid="error", origin="big.csv")
    msg = _one_line(err)
    assert "b9" in msg and "b10" not in msg and "25" in msg


def test_validate_whitespace_only_is_missing() -> None:
    rows = [Problem("a", "   ", "1"), Problem("b", "ok", " ")]
    _, skipped = validate_problems(rows, on_invalid="skip", origin="x")
    assert skipped == ["a", "b"]


def test_duplicate_ids_always_error() -> None:
    rows = [Problem("a", "p", "1"), Problem("a", "q", "2"), Problem("b", "r", "3")]
    for policy in ("error", "skip"):
        with pytest.raises(DataError) as err:
            validate_problems(rows, on_invalid=policy, origin="dups.jsonl")
        msg = _one_line(err)
        assert "duplicate" in msg and "dups.jsonl" in msg and "a" in msg


def test_validate_bad_policy() -> None:
    with pytest.raises(DataError, match="on_invalid"):
        validate_problems([], on_invalid="drop", origin="x")


def test_file_rows_with_empty_answer_through_validation(tmp_path: Path) -> None:
    f = tmp_path / "holes.jsonl"
    rows = [{"id": f"r{i}", "problem": f"p{i}", "answer": "" if i in (2, 5) else str(i)} for i in range(8)]
    rows[6]["answer"] = None
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    probs = load_file(f)
    valid, skipped = validate_problems(probs, on_invalid="skip", origin=str(f))
    assert len(valid) == 5 and skipped == ["r2", "r5", "r6"]
    with pytest.raises(DataError, match=r"holes.jsonl: 3 row\(s\).*r2, r5, r6"):
        validate_problems(probs, on_invalid="error", origin=str(f))


def test_rows_to_problems_direct() -> None:
    recs = [{"q": "1+1?", "a": 2}, {"q": "2+2?", "a": 4, "id": "x"}]
    probs = rows_to_problems(recs, {"problem": "q", "answer": "a"}, "src", "pre")
    assert probs == [Problem("pre-0", "1+1?", "2", "", "src"), Problem("x", "2+2?", "4", "", "src")]
    assert rows_to_problems([], None, "src", "pre") == []


# --------------------------------------------------------------------------- HF loader (local paths)


def test_load_hf_local_data_dir(tmp_path: Path) -> None:
    d = FIX / "hf_int_hard_set"
    train = load_hf(str(d), split="train", cache_dir=str(tmp_path / "cache"))
    test = load_hf(str(d), split="test", cache_dir=str(tmp_path / "cache"))
    assert len(train) == 9 and len(test) == 3
    ref = load_file(FIX / "int_hard_set.jsonl")
    assert [p.problem for p in train + test] == [p.problem for p in ref]
    assert [p.answer for p in train + test] == [p.answer for p in ref]
    assert train[3].reference_solution == ref[3].reference_solution  # solution fallback
    assert train[0].id == "hf_int_hard_set-train-0" and test[0].id == "hf_int_hard_set-test-0"
    assert train[0].source == "aime"


def test_load_hf_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_hf(str(FIX / "hf_int_hard_set"), split="validation", cache_dir=str(tmp_path / "cache"))
    assert "hf_int_hard_set" in _one_line(err) and "validation" in str(err.value)


def test_load_hf_saved_to_disk(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(
                [{"question": "1+1?", "final": 2, "sol": "1+1=2"}, {"question": "2*3?", "final": 6, "sol": ""}]
            )
        }
    )
    out = tmp_path / "saved"
    dd.save_to_disk(str(out))
    probs = load_hf(
        str(out),
        split="train",
        columns={"problem": "question", "answer": "final", "reference_solution": "sol"},
        source="toy",
    )
    assert probs == [
        Problem("saved-train-0", "1+1?", "2", "1+1=2", "toy"),
        Problem("saved-train-1", "2*3?", "6", "", "toy"),
    ]
    with pytest.raises(DataError, match="'nope'"):
        load_hf(str(out), split="train", columns={"problem": "nope"})


def test_load_hf_single_file(tmp_path: Path) -> None:
    probs = load_hf(str(FIX / "int_hard_set.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(probs) == 12 and probs[0].id == "int_hard_set-train-0"


def test_load_hf_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_hf(str(tmp_path / "does-not-exist-dir"), split="train", cache_dir=str(tmp_path / "cache"))
    assert "does-not-exist-dir" in _one_line(err)


# --------------------------------------------------------------------------- CHAMP


def test_load_champ_fixture() -> None:
    probs = load_champ(CHAMP_JSON)
    assert [p.id for p in probs] == ["P_Combinatorics_1", "P_Number-Theory_7", "P_Sequence_3"]
    p = probs[0]
    assert p.answer == "239"
    assert p.source == "champ/Combinatorics"
    steps = p.reference_solution.split("\n\n")
    assert len(steps) == 5
    assert steps[-1] == "Thus, in total, there are x_6+y_6+z_6=70+99+70=239 such strings."
    assert "@@" not in p.reference_solution and "@@" not in p.problem
    assert probs[2].answer == "2^n-1"  # @@ markers removed from the raw answer
    assert [q.id for q in load_champ(CHAMP_JSON, categories=["sequence"])] == ["P_Sequence_3"]


def test_load_champ_annotations_fixture() -> None:
    anns = load_champ_annotations(CHAMP_JSON)
    assert len(anns) == 2
    a, b = anns
    assert a.problem_id == "P_Combinatorics_1" and a.model_key == "GPT-3.5|No C w/o H"
    assert a.wrong_step == "Then f(n) = 3 f(n-1), so f(6) = 729."
    assert b.start is None and b.wrong_step is None


def test_load_champ_via_package_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIX / "champ"))
    assert champ_mod.champ_dataset_path() == CHAMP_JSON
    assert len(load_champ()) == 3


def test_load_champ_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = champ_mod.importlib.util.find_spec
    monkeypatch.setattr(
        champ_mod.importlib.util, "find_spec", lambda name, *a: None if name == "champ_dataset" else real(name, *a)
    )
    with pytest.raises(DataError, match="pip install champ-dataset"):
        load_champ()


def test_load_champ_bad_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_champ(tmp_path / "v0.json")
    f = tmp_path / "v0.json"
    f.write_text('{"concepts": {}}')
    with pytest.raises(DataError, match="'problems'"):
        load_champ(f)

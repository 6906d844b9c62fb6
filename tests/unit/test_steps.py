"""Unit tests for intrain.steps (step segmentation, §3.3)."""

from __future__ import annotations

import pytest

from intrain.steps import (
    Substep,
    prefix_before,
    render_numbered,
    split_substeps,
)

TRACE = "First we expand.\n\nThen x = 2.\n\nSo the answer is \\boxed{4}."


def _check_offsets(trace: str, steps: list[Substep]) -> None:
    for s in steps:
        assert trace[s.start : s.end].replace("\r\n", "\n") == s.text
    assert [s.index for s in steps] == list(range(1, len(steps) + 1))
    starts = [s.start for s in steps]
    assert starts == sorted(starts)


def test_basic_split_matches_str_split():
    steps = split_substeps(TRACE)
    assert [s.text for s in steps] == TRACE.split("\n\n")
    assert [s.index for s in steps] == [1, 2, 3]
    _check_offsets(TRACE, steps)
    assert steps[0].start == 0 and steps[-1].end == len(TRACE)


def test_single_step_trace():
    steps = split_substeps("Only one step here.\nWith a single newline.")
    assert len(steps) == 1
    assert steps[0] == Substep(1, "Only one step here.\nWith a single newline.", 0, 42)
    assert prefix_before("Only one step here.\nWith a single newline.", steps, 1) == ""
    with pytest.raises(ValueError):
        prefix_before("x", steps, 2)


def test_empty_trace_has_no_substeps():
    assert split_substeps("") == []
    assert split_substeps("\n\n\n\n") == []
    assert split_substeps("   \n\n \t ") == []


def test_prefix_location_one_is_empty():
    steps = split_substeps(TRACE)
    assert prefix_before(TRACE, steps, 1) == ""


def test_prefix_location_last():
    steps = split_substeps(TRACE)
    assert prefix_before(TRACE, steps, 3) == "First we expand.\n\nThen x = 2."
    # same as the reference "\n\n".join(steps[:loc-1])
    assert prefix_before(TRACE, steps, 3) == "\n\n".join(TRACE.split("\n\n")[:2])


def test_prefix_middle():
    steps = split_substeps(TRACE)
    assert prefix_before(TRACE, steps, 2) == "First we expand."


@pytest.mark.parametrize("loc", [4, 5, 100])
def test_prefix_past_end_raises(loc):
    steps = split_substeps(TRACE)
    with pytest.raises(ValueError, match="past the end"):
        prefix_before(TRACE, steps, loc)


@pytest.mark.parametrize("loc", [0, -1])
def test_prefix_below_one_raises(loc):
    steps = split_substeps(TRACE)
    with pytest.raises(ValueError, match=">= 1"):
        prefix_before(TRACE, steps, loc)


@pytest.mark.parametrize("loc", [1.0, "2", True, None])
def test_prefix_non_int_raises(loc):
    steps = split_substeps(TRACE)
    with pytest.raises(ValueError):
        prefix_before(TRACE, steps, loc)  # type: ignore[arg-type]


def test_crlf_separates_and_offsets_map_to_original():
    trace = "Step one.\r\nstill one.\r\n\r\nStep two.\r\n\r\nStep three."
    steps = split_substeps(trace)
    assert [s.text for s in steps] == ["Step one.\nstill one.", "Step two.", "Step three."]
    _check_offsets(trace, steps)
    assert trace[steps[0].start : steps[0].end] == "Step one.\r\nstill one."
    assert trace[steps[1].start : steps[1].end] == "Step two."
    assert steps[2].end == len(trace)
    # prefix keeps the original CRLF text
    assert prefix_before(trace, steps, 3) == "Step one.\r\nstill one.\r\n\r\nStep two."
    assert prefix_before(trace, steps, 2) == "Step one.\r\nstill one."


def test_mixed_line_endings():
    trace = "a\n\r\nb\r\n\nc"
    steps = split_substeps(trace)
    assert [s.text for s in steps] == ["a", "b", "c"]
    _check_offsets(trace, steps)
    assert prefix_before(trace, steps, 3) == "a\n\r\nb"


def test_crlf_chunk_ending_with_crlf():
    trace = "a\r\n\r\n\r\nb"  # three CRLFs: chunk 2 starts with a newline
    steps = split_substeps(trace)
    assert [s.text for s in steps] == ["a", "\nb"]
    _check_offsets(trace, steps)
    assert trace[steps[1].start : steps[1].end] == "\r\nb"


def test_crlf_separator_argument_is_normalised():
    trace = "a\r\n\r\nb"
    assert [s.text for s in split_substeps(trace, "\r\n\r\n")] == ["a", "b"]


def test_empty_chunks_dropped_offsets_exact():
    trace = "\n\nAlpha.\n\n\n\nBeta.\n\n \n\nGamma.\n\n"
    steps = split_substeps(trace)
    assert [s.text for s in steps] == ["Alpha.", "Beta.", "Gamma."]
    assert [s.index for s in steps] == [1, 2, 3]
    _check_offsets(trace, steps)
    assert steps[0].start == 2
    assert trace[steps[2].start : steps[2].end] == "Gamma."
    # prefix stops at the end of the previous substep (dropped chunks removed)
    assert prefix_before(trace, steps, 2) == "\n\nAlpha."
    assert prefix_before(trace, steps, 3) == "\n\nAlpha.\n\n\n\nBeta."


def test_triple_newline_keeps_leading_newline_in_chunk():
    trace = "a\n\n\nb"
    steps = split_substeps(trace)
    assert [s.text for s in steps] == ["a", "\nb"]
    _check_offsets(trace, steps)
    assert prefix_before(trace, steps, 2) == "a"


def test_chunk_whitespace_kept_verbatim():
    trace = "  a  \n\n\tb"
    steps = split_substeps(trace)
    assert [s.text for s in steps] == ["  a  ", "\tb"]
    assert prefix_before(trace, steps, 2) == "  a  "


def test_custom_separator():
    trace = "one\ntwo\nthree"
    steps = split_substeps(trace, separator="\n")
    assert [s.text for s in steps] == ["one", "two", "three"]
    _check_offsets(trace, steps)
    assert prefix_before(trace, steps, 3) == "one\ntwo"


def test_empty_separator_rejected():
    with pytest.raises(ValueError):
        split_substeps("abc", separator="")


def test_render_numbered_format():
    steps = split_substeps(TRACE)
    assert render_numbered(steps) == (
        "**Substep 1:** First we expand.\n\n**Substep 2:** Then x = 2.\n\n**Substep 3:** So the answer is \\boxed{4}."
    )
    assert render_numbered([]) == ""


def test_render_numbered_after_dropping_empty_chunks():
    steps = split_substeps("\n\nA\n\n\n\nB")
    assert render_numbered(steps) == "**Substep 1:** A\n\n**Substep 2:** B"


def test_long_trace_offsets():
    parts = [f"Step {i}: compute {i}*{i} = {i * i}." for i in range(300)]
    trace = "\r\n\r\n".join(parts)
    steps = split_substeps(trace)
    assert len(steps) == 300
    _check_offsets(trace, steps)
    assert prefix_before(trace, steps, 300) == "\r\n\r\n".join(parts[:299])

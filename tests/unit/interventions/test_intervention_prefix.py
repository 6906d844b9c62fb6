"""Unit tests for intrain.interventions.prefix: guided prefix and original-step prefix (§3.5)."""

from __future__ import annotations

import pytest

from intrain.interventions import double_newlines, guided_prefix, original_step_prefix
from intrain.steps import split_substeps

TRACE = "Step A.\n\nStep B.\n\nStep C is wrong.\n\nStep D."


def test_guided_prefix_location_one():
    assert guided_prefix(TRACE, "Let me start differently.", 1) == "Let me start differently."


def test_guided_prefix_middle():
    assert guided_prefix(TRACE, "Check C.", 3) == "Step A.\n\nStep B.\n\nCheck C."


def test_guided_prefix_last():
    assert guided_prefix(TRACE, "Check D.", 4) == "Step A.\n\nStep B.\n\nStep C is wrong.\n\nCheck D."


def test_guided_prefix_past_end_raises():
    with pytest.raises(ValueError):
        guided_prefix(TRACE, "x", 5)
    with pytest.raises(ValueError):
        guided_prefix(TRACE, "x", 0)


def test_guided_prefix_multiline_content_doubling():
    content = "Line one.\nLine two.\n\nLine three.\n\n\nLine four.\n"
    expected = "Step A.\n\nLine one.\n\nLine two.\n\nLine three.\n\nLine four."
    assert guided_prefix(TRACE, content, 2) == expected


def test_guided_prefix_content_stripped_and_crlf():
    assert guided_prefix(TRACE, "  \n a\r\nb \n", 1) == "a\n\nb"


def test_guided_prefix_crlf_trace_keeps_original_prefix():
    trace = "Step A.\r\n\r\nStep B.\r\nmore B.\r\n\r\nStep C."
    out = guided_prefix(trace, "Fix.\nThen go.", 3)
    assert out == "Step A.\r\n\r\nStep B.\r\nmore B.\n\nFix.\n\nThen go."


def test_guided_prefix_empty_chunks_in_trace():
    trace = "Step A.\n\n\n\nStep B.\n\nStep C."
    assert guided_prefix(trace, "Fix.", 2) == "Step A.\n\nFix."
    assert guided_prefix(trace, "Fix.", 3) == "Step A.\n\n\n\nStep B.\n\nFix."


def test_guided_prefix_resplits_into_content_steps():
    out = guided_prefix(TRACE, "One.\nTwo.", 3)
    assert [s.text for s in split_substeps(out)] == ["Step A.", "Step B.", "One.", "Two."]


def test_double_newlines():
    assert double_newlines("a\nb") == "a\n\nb"
    assert double_newlines("a\n\nb") == "a\n\nb"
    assert double_newlines("a\n  \nb") == "a\n\nb"
    assert double_newlines("a\r\nb") == "a\n\nb"
    assert double_newlines("a\n  b") == "a\n\n  b"


def test_original_step_prefix_keeps_the_erroneous_step():
    steps = split_substeps(TRACE)
    assert original_step_prefix(TRACE, steps, 1) == "Step A."
    assert original_step_prefix(TRACE, steps, 3) == "Step A.\n\nStep B.\n\nStep C is wrong."
    assert original_step_prefix(TRACE, steps, 4) == TRACE


def test_original_step_prefix_crlf_trace_keeps_original_text():
    trace = "Step A.\r\n\r\nStep B.\r\nmore B.\r\n\r\nStep C."
    assert original_step_prefix(trace, split_substeps(trace), 2) == "Step A.\r\n\r\nStep B.\r\nmore B."


def test_original_step_prefix_location_out_of_range_raises():
    steps = split_substeps(TRACE)
    for location in (0, -1, 5):
        with pytest.raises(ValueError):
            original_step_prefix(TRACE, steps, location)

"""Unit tests for intrain.interventions.parse: the tolerant parse ladder, corpus of real failures (§3.5)."""

from __future__ import annotations

import ast
import builtins
import contextlib
import re
from pathlib import Path

import pytest

from intrain.interventions import (
    MIN_QUOTE_CHARS,
    STATUSES,
    ParsedIntervention,
    extract_last_block,
    parse_intervention,
    quote_substeps,
    unescape_model_string,
)
from intrain.interventions import parse as parse_module

ANY = object()  # "do not check this field"


def _wrap(body: str) -> str:
    return f"### Intervention Step\n\n<intervention>\n{body}\n</intervention>"


VERIFICATION_LOG = r"""## Detailed Verification Log

* **Substep 1:** "Let $n$ be the number of ..." -- correct restatement.
* **Substep 2:** "Then $n^2 \equiv 1 \pmod 8$" -- correct, odd squares are $1 \bmod 8$.
* **Substep 3:** "So $n \le 7$" -- **error**: the student drops the case $n = 8$.

I will write my final proposal inside <intervention> tags, as requested. Note that the
<intervention> block must contain a JSON dict with "content" and "location".

## Critical Error Report

* **Location:** "So $n \le 7$"
  **Issue:** Critical. The bound is wrong; this is never recovered.

## Intervention Step

**Draft**
* Content: Let me re-check the bound on $n$ ...
* Location: Substep 3

**Self-check**
* Q1: Does the content contain the exact answer 8? No.
* Q2: Is it missing key insights? No.
* Q3: Is the location later than the first critical error? No.

Final:
"""

DRAFT_THEN_FINAL = (
    "Draft:\n<intervention>\n"
    '{"content": "Draft idea: just try n = 8 directly.", "location": 4}\n'
    "</intervention>\n\nSelf-check: Q1 Yes (it gives away the answer). Revising.\n\n"
    "<intervention>\n"
    '{"content": "Let me re-check whether the bound $n \\le 7$ is really forced.", "location": 3}\n'
    "</intervention>"
)

TEMPLATE_ECHO_THEN_REAL = (
    "The required format is:\n\n<intervention>\n"
    '{ "content": INSERT_STEP_CONTENT, "location": INSERT_STEP_NUMBER }\n'
    "</intervention>\n\nHere is mine:\n\n<intervention>\n"
    '{ "content": "Before bounding, let me list the small cases.", "location": 2 }\n'
    "</intervention>\n"
)

# (id, output, num_substeps, status, content, location)
PARSE_CASES = [
    # --- well formed ------------------------------------------------------- #
    (
        "simple_ok",
        _wrap('{ "content": "Let me reconsider the parity.", "location": 3 }'),
        10,
        "ok",
        "Let me reconsider the parity.",
        3,
    ),
    (
        "one_line_block",
        '<intervention>{"content": "Check n=1 first.", "location": 1}</intervention>',
        3,
        "ok",
        "Check n=1 first.",
        1,
    ),
    (
        "pretty_printed",
        _wrap('{\n    "content": "Try the substitution $u = x+1$.",\n    "location": 7\n}'),
        9,
        "ok",
        "Try the substitution $u = x+1$.",
        7,
    ),
    ("location_last_step", _wrap('{"content": "Re-derive the sum.", "location": 5}'), 5, "ok", "Re-derive the sum.", 5),
    ("keys_reversed", _wrap('{"location": 4, "content": "Use symmetry."}'), 6, "ok", "Use symmetry.", 4),
    (
        "extra_keys_ignored",
        _wrap('{"reason": "bound error", "content": "Recount the cases.", "confidence": 0.9, "location": 2}'),
        6,
        "ok",
        "Recount the cases.",
        2,
    ),
    ("capitalised_keys", _wrap('{"Content": "Factor first.", "Location": 3}'), 6, "ok", "Factor first.", 3),
    (
        "uppercase_tags",
        '<INTERVENTION>\n{"content": "Factor first.", "location": 3}\n</Intervention>',
        6,
        "ok",
        "Factor first.",
        3,
    ),
    (
        "nested_dict",
        _wrap('{"intervention": {"content": "Use AM-GM here.", "location": 2}}'),
        4,
        "ok",
        "Use AM-GM here.",
        2,
    ),
    ("content_number", _wrap('{"content": 42, "location": 2}'), 4, "ok", "42", 2),
    (
        "dict_then_trailing_prose",
        _wrap('{"content": "Recheck step.", "location": 2}\nThis steers the student back.'),
        4,
        "ok",
        "Recheck step.",
        2,
    ),
    ("lead_in_line_in_block", _wrap('Here is the content:\n{"content": "abc", "location": 2}'), 4, "ok", "abc", 2),
    # --- location repairs -------------------------------------------------- #
    (
        "location_substep_string",
        _wrap('{"content": "Fix the sign.", "location": "Substep 12"}'),
        20,
        "ok",
        "Fix the sign.",
        12,
    ),
    ("location_digit_string", _wrap('{"content": "Fix the sign.", "location": "12"}'), 20, "ok", "Fix the sign.", 12),
    ("location_bold_substep", _wrap('{"content": "Fix it.", "location": "**Substep 5**"}'), 20, "ok", "Fix it.", 5),
    ("location_range_takes_first", _wrap('{"content": "Fix it.", "location": "Substeps 3-4"}'), 20, "ok", "Fix it.", 3),
    ("location_float_integral", _wrap('{"content": "Fix it.", "location": 4.0}'), 20, "ok", "Fix it.", 4),
    ("unquoted_keys", _wrap('{content: "Recount.", location: 12}'), 20, "ok", "Recount.", 12),
    ("location_fractional", _wrap('{"content": "Fix it.", "location": 4.5}'), 20, "bad_location", "Fix it.", None),
    ("location_zero", _wrap('{"content": "Fix it.", "location": 0}'), 20, "bad_location", "Fix it.", 0),
    ("location_negative", _wrap('{"content": "Fix it.", "location": -2}'), 20, "bad_location", "Fix it.", -2),
    ("location_n_plus_1_append", _wrap('{"content": "Fix it.", "location": 6}'), 5, "bad_location", "Fix it.", 6),
    ("location_far_past_end", _wrap('{"content": "Fix it.", "location": 250}'), 40, "bad_location", "Fix it.", 250),
    (
        "location_placeholder",
        _wrap('{"content": "Fix it.", "location": INSERT_STEP_NUMBER}'),
        20,
        "bad_location",
        "Fix it.",
        None,
    ),
    ("location_words", _wrap('{"content": "Fix it.", "location": "twelve"}'), 20, "bad_location", "Fix it.", None),
    ("location_bool", _wrap('{"content": "Fix it.", "location": true}'), 20, "bad_location", "Fix it.", None),
    ("location_null", _wrap('{"content": "Fix it.", "location": null}'), 20, "bad_location", "Fix it.", None),
    ("no_substeps", _wrap('{"content": "Fix it.", "location": 1}'), 0, "bad_location", "Fix it.", 1),
    ("location_missing", _wrap('{"content": "Fix it."}'), 20, "bad_json", "Fix it.", None),
    # --- tags ---------------------------------------------------------------- #
    ("no_tag", "I verified everything; the student is right.", 5, "no_tag", None, None),
    ("no_tag_bare_json", '{"content": "abc", "location": 2}', 5, "no_tag", None, None),
    ("only_closing_tag", '{"content": "abc", "location": 2}\n</intervention>', 5, "no_tag", None, None),
    (
        "missing_closing_tag",
        'Final:\n<intervention>\n{"content": "Recheck the base case.", "location": 2}\n',
        5,
        "ok",
        "Recheck the base case.",
        2,
    ),
    ("truncated_mid_json", '<intervention>\n{"content": "Recheck the base ca', 5, "bad_json", None, None),
    (
        "prose_mentions_then_final",
        VERIFICATION_LOG
        + _wrap(
            r'{"content": "Let me re-check the bound: is $n \le 7$ really forced, or can $n = 8$ work?", '
            r'"location": 3}'
        ),
        12,
        "ok",
        r"Let me re-check the bound: is $n \le 7$ really forced, or can $n = 8$ work?",
        3,
    ),
    (
        "draft_then_final",
        DRAFT_THEN_FINAL,
        6,
        "ok",
        r"Let me re-check whether the bound $n \le 7$ is really forced.",
        3,
    ),
    ("template_echo_then_real", TEMPLATE_ECHO_THEN_REAL, 6, "ok", "Before bounding, let me list the small cases.", 2),
    (
        "trailing_unclosed_mention",
        _wrap('{"content": "Recount.", "location": 2}') + "\n\nI placed the step in the <intervention> block above.",
        5,
        "ok",
        "Recount.",
        2,
    ),
    (
        "trailing_inline_pair_mention",
        _wrap('{"content": "Recount.", "location": 2}')
        + "\n\nAs required, the step is wrapped in <intervention>...</intervention> tags.",
        5,
        "ok",
        "Recount.",
        2,
    ),
    # --- empty / placeholders ------------------------------------------------- #
    ("empty_block", "No critical error.\n<intervention>\n</intervention>", 5, "empty", None, None),
    ("empty_dict", _wrap("{}"), 5, "empty", None, None),
    ("empty_content", _wrap('{"content": "", "location": 3}'), 5, "empty", None, None),
    ("whitespace_content", _wrap('{"content": "   \\n  ", "location": 3}'), 5, "empty", None, None),
    (
        "template_echo",
        _wrap('{ "content": INSERT_STEP_CONTENT, "location": INSERT_STEP_NUMBER }'),
        5,
        "empty",
        None,
        None,
    ),
    (
        "template_echo_quoted",
        _wrap('{ "content": "INSERT_STEP_CONTENT", "location": "INSERT_STEP_NUMBER" }'),
        5,
        "empty",
        None,
        None,
    ),
    ("ellipsis_content", _wrap('{"content": "...", "location": 2}'), 5, "empty", None, None),
    ("none_block", _wrap("None"), 5, "empty", None, None),
    ("null_content", _wrap('{"content": null, "location": 2}'), 5, "empty", None, None),
    ("no_error_content", _wrap('{"content": "No critical error found.", "location": 1}'), 5, "empty", None, None),
    # --- LaTeX / escapes ------------------------------------------------------ #
    (
        "latex_single_backslashes",
        _wrap(
            r'{"content": "Note \frac{1}{2} \neq \theta \times \beta, so \( x \) is \boxed{} not \nabla f '
            r'and \left( a \right) with \text{ cm}.", "location": 2}'
        ),
        5,
        "ok",
        r"Note \frac{1}{2} \neq \theta \times \beta, so \( x \) is \boxed{} not \nabla f "
        r"and \left( a \right) with \text{ cm}.",
        2,
    ),
    (
        "latex_json_escaped",
        _wrap(r'{"content": "Use \\frac{a}{b} and \\(x^2\\).", "location": 2}'),
        5,
        "ok",
        r"Use \frac{a}{b} and \(x^2\).",
        2,
    ),
    (
        "newline_escape_vs_neq",
        _wrap(r'{"content": "Since a \neq b.\nThe next step is \nabla.", "location": 2}'),
        5,
        "ok",
        "Since a \\neq b.\nThe next step is \\nabla.",
        2,
    ),
    (
        "newline_escape_lowercase_word",
        _wrap(r'{"content": "First line\nthen second\n2. third", "location": 2}'),
        5,
        "ok",
        "First line\nthen second\n2. third",
        2,
    ),
    ("latex_linebreak_double_backslash", _wrap(r'{"content": "a \\\\ b", "location": 2}'), 5, "ok", r"a \\ b", 2),
    (
        "unicode_and_slash_escapes",
        _wrap(r'{"content": "Angle 90\u00b0 and a\/b", "location": 2}'),
        5,
        "ok",
        "Angle 90\u00b0 and a/b",
        2,
    ),
    (
        "crlf_escapes_in_json",
        _wrap(r'{"content": "line one\r\nline two", "location": 2}'),
        5,
        "ok",
        "line one\nline two",
        2,
    ),
    ("tab_escape_before_space", _wrap(r'{"content": "col1\t col2", "location": 2}'), 5, "ok", "col1\t col2", 2),
    # --- broken JSON ---------------------------------------------------------- #
    (
        "unescaped_inner_quotes",
        _wrap('{"content": "The student wrote "x = 3" but it is wrong.", "location": "Substep 4"}'),
        6,
        "ok",
        'The student wrote "x = 3" but it is wrong.',
        4,
    ),
    (
        "unescaped_quote_comma_inside",
        _wrap('{"content": "He said "no", then stopped.", "location": 2}'),
        6,
        "ok",
        'He said "no", then stopped.',
        2,
    ),
    (
        "escaped_inner_quotes",
        _wrap(r'{"content": "Call it \"the key lemma\" and use it.", "location": 2}'),
        6,
        "ok",
        'Call it "the key lemma" and use it.',
        2,
    ),
    (
        "raw_newlines_in_string",
        _wrap('{"content": "First, recheck the sum.\nThen bound it.", "location": 2}'),
        6,
        "ok",
        "First, recheck the sum.\nThen bound it.",
        2,
    ),
    ("trailing_comma", _wrap('{"content": "Recount.", "location": 2,}'), 6, "ok", "Recount.", 2),
    (
        "single_quoted_python_dict",
        _wrap("{'content': 'Recount the cases.', 'location': 2}"),
        6,
        "ok",
        "Recount the cases.",
        2,
    ),
    (
        "python_dict_escaped_apostrophe",
        _wrap(r"{'content': 'Let\'s recount \(n\).', 'location': 2}"),
        6,
        "ok",
        r"Let's recount \(n\).",
        2,
    ),
    (
        "python_dict_apostrophe_unescaped",
        _wrap("{'content': 'Let's recount the students' answers.', 'location': 2}"),
        6,
        "ok",
        "Let's recount the students' answers.",
        2,
    ),
    (
        "python_triple_quoted",
        _wrap('{"content": """Line "one"\nLine two""", "location": 3}'),
        6,
        "ok",
        'Line "one"\nLine two',
        3,
    ),
    (
        "content_list",
        _wrap('{"content": ["Recount the cases.", "Then check $n=8$."], "location": 2}'),
        6,
        "ok",
        "Recount the cases.\nThen check $n=8$.",
        2,
    ),
    (
        "content_list_broken_json",
        _wrap(r'{"content": ["Use \frac{1}{2}.", "Then "stop".",], "location": 2}'),
        6,
        "ok",
        'Use \\frac{1}{2}.\nThen "stop".',
        2,
    ),
    ("code_fence_json", _wrap('```json\n{"content": "Recount.", "location": 2}\n```'), 6, "ok", "Recount.", 2),
    (
        "code_fence_plain_inline",
        '<intervention>```{"content": "Recount.", "location": 2}```</intervention>',
        6,
        "ok",
        "Recount.",
        2,
    ),
    (
        "content_with_braces_and_boxed",
        _wrap(r'{"content": "Define $S = \{x : x > 0\}$; the final form is \boxed{} with } inside.", "location": 3}'),
        6,
        "ok",
        r"Define $S = \{x : x > 0\}$; the final form is \boxed{} with } inside.",
        3,
    ),
    (
        "braces_quotes_location_first",
        _wrap(r'{"location": 7, "content": "Write "\boxed{\text{ans}}" only at the end; set {a, b} matters."}'),
        9,
        "ok",
        r'Write "\boxed{\text{ans}}" only at the end; set {a, b} matters.',
        7,
    ),
    (
        "missing_close_quote_before_location",
        _wrap('{"content": "Recount the cases, "location": 3}'),
        6,
        "ok",
        "Recount the cases,",
        3,
    ),
    (
        "word_location_inside_content",
        _wrap('{"content": "The location: of the max is x=3, "check" it.", "location": 4}'),
        6,
        "ok",
        'The location: of the max is x=3, "check" it.',
        4,
    ),
    (
        "markdown_fields",
        _wrap("**Content:** Let me try $x = \\tan\\theta$ instead.\n**Location:** Substep 4"),
        6,
        "ok",
        r"Let me try $x = \tan\theta$ instead.",
        4,
    ),
    (
        "plain_fields_with_boxed",
        _wrap("Content: Try \\boxed{} at the very end only.\nLocation: 2"),
        6,
        "ok",
        r"Try \boxed{} at the very end only.",
        2,
    ),
    ("crlf_output", '<intervention>\r\n{"content": "a\r\nb", "location": 2}\r\n</intervention>', 6, "ok", "a\nb", 2),
    ("garbage_in_block", _wrap("I think the student should fix the third step."), 6, "bad_json", None, None),
    ("only_location_key", _wrap('{"location": 3}'), 6, "bad_json", None, None),
]


def test_parse_case_count():
    assert len(PARSE_CASES) >= 40
    assert len({c[0] for c in PARSE_CASES}) == len(PARSE_CASES)


@pytest.mark.parametrize(
    "output,n,status,content,location",
    [c[1:] for c in PARSE_CASES],
    ids=[c[0] for c in PARSE_CASES],
)
def test_parse_intervention(output, n, status, content, location):
    res = parse_intervention(output, n)
    assert isinstance(res, ParsedIntervention)
    assert res.status in STATUSES
    assert res.status == status, res
    if content is not ANY:
        assert res.content == content
    if location is not ANY:
        assert res.location == location
    if status == "no_tag":
        assert res.raw is None
    else:
        assert isinstance(res.raw, str)


def test_raw_is_text_of_last_block():
    res = parse_intervention(DRAFT_THEN_FINAL, 6)
    assert "re-check whether the bound" in res.raw
    assert "Draft idea" not in res.raw


def test_extract_last_block_prose_mentions():
    out = "Use <intervention> tags.\n<intervention>\nX {\n</intervention>"
    assert extract_last_block(out) == "\nX {\n"
    assert extract_last_block("no tags") is None


def test_parse_none_output():
    assert parse_intervention("", 3).status == "no_tag"


def test_unescape_model_string_rules():
    assert unescape_model_string(r"\frac\theta\times\beta\right\text") == r"\frac\theta\times\beta\right\text"
    assert unescape_model_string(r"a\nb") == "a\nb"
    assert unescape_model_string(r"\neq\nabla\not\nu") == r"\neq\nabla\not\nu"
    assert unescape_model_string(r"\\neq") == r"\neq"
    assert unescape_model_string(r"a\tb") == r"a\tb"  # \t + letter: LaTeX-ish, kept
    assert unescape_model_string("a\\t1") == "a\t1"
    assert unescape_model_string(r"\"q\" \'s\'") == "\"q\" 's'"
    assert unescape_model_string("end\\") == "end\\"


# --------------------------------------------------------------------------- #
# Never evaluates model text
# --------------------------------------------------------------------------- #

# Modules whose import while parsing can only mean model text is being run.
_FORBIDDEN_IMPORTS = frozenset({"os", "posix", "nt", "pathlib", "subprocess", "shutil", "ctypes"})


@contextlib.contextmanager
def _forbid_code_execution(monkeypatch):
    """Make ``eval``/``exec``, compiling to bytecode and importing os-like modules raise; yield the calls.

    ``compile(..., PyCF_ONLY_AST)`` stays allowed: ``ast.literal_eval`` builds a tree, never code.
    """
    calls: list[str] = []
    real_compile, real_import = builtins.compile, builtins.__import__

    def refuse(name):
        calls.append(name)
        raise AssertionError(f"{name} called while parsing model text")

    def compile_ast_only(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & ast.PyCF_ONLY_AST:
            refuse("compile")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def guarded_import(name, *args, **kwargs):
        if name.partition(".")[0] in _FORBIDDEN_IMPORTS:
            refuse(f"__import__({name})")
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, "eval", lambda *a, **k: refuse("eval"))
        m.setattr(builtins, "exec", lambda *a, **k: refuse("exec"))
        m.setattr(builtins, "compile", compile_ast_only)
        m.setattr(builtins, "__import__", guarded_import)
        yield calls


# CANARY is replaced by a path in tmp_path; running any payload would create that file.
_WRITE = "__import__('pathlib').Path('CANARY').write_text('x')"
EVIL_PAYLOADS = [
    ("os_system", '{"content": __import__("os").system("touch CANARY"), "location": 1}'),
    ("import_call", f'{{"content": {_WRITE}, "location": 1}}'),
    ("import_call_python_dict", f"{{'content': {_WRITE}, 'location': 1}}"),
    ("import_call_in_location", f'{{"content": "Recount.", "location": {_WRITE}}}'),
    ("eval_call", f'{{"content": eval("{_WRITE}"), "location": 1}}'),
    ("exec_call", f'{{"content": exec("{_WRITE}"), "location": 1}}'),
    ("compile_exec", f'{{"content": exec(compile("{_WRITE}", "m", "exec")), "location": 1}}'),
    ("lambda", f'{{"content": (lambda: {_WRITE})(), "location": 1}}'),
    ("f_string", f'{{"content": f"{{{_WRITE}}}", "location": 1}}'),
    ("comprehension", f'{{"content": [x for x in [{_WRITE}]], "location": 1}}'),
    ("dict_unpacking", f'{{"content": "Recount.", **{{"location": {_WRITE}}}}}'),
    ("walrus", f'{{"content": (y := {_WRITE}), "location": 1}}'),
    ("getattr_builtins", '{"content": getattr(__builtins__, "exec")("open(\'CANARY\', \'w\')"), "location": 1}'),
    ("operator_expression", '{"content": "Recount.", "location": 2**100 + 1}'),  # literal_eval refuses
    ("huge_int", '{"content": "Recount.", "location": ' + "9" * 5000 + "}"),
    ("deep_nesting", "{" * 20000 + '"content": "x", "location": 1' + "}" * 20000),
    ("yaml_apply", "!!python/object/apply:os.system ['touch CANARY']"),
    ("yaml_in_fields", "content: !!python/object/apply:os.system ['touch CANARY']\nlocation: 1"),
    ("yaml_in_json", '{"content": !!python/object/apply:os.system ["touch CANARY"], "location": 1}'),
    ("markdown_fields", f"**Content:** {{{{ {_WRITE} }}}}\n**Location:** __import__('os').getpid()"),
    ("code_fence", "```python\nimport pathlib; pathlib.Path('CANARY').write_text('x')\n```"),
]


@pytest.mark.parametrize("template", [p[1] for p in EVIL_PAYLOADS], ids=[p[0] for p in EVIL_PAYLOADS])
def test_parser_never_evaluates_code(template, tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    payload = template.replace("CANARY", canary.as_posix())
    for output in (_wrap(payload), f"<intervention>{payload}"):  # closed block and truncated tail
        with _forbid_code_execution(monkeypatch) as calls:
            res = parse_intervention(output, 3)
        assert calls == [], calls
        assert not canary.exists()
        assert res.status in STATUSES  # parsed as text at most, never executed
        assert res.content is None or res.content in output  # text from the payload, not a result
    if template.startswith('{"content": __import__("os")'):
        assert res.content is None or "__import__" in res.content


def test_code_execution_guard_can_fail(tmp_path, monkeypatch):
    """The checks above are live: the guard records eval, the canary sees what bypasses the guard."""
    canary = tmp_path / "canary"
    with _forbid_code_execution(monkeypatch) as calls, pytest.raises(AssertionError):
        eval(f"__import__('pathlib').Path({str(canary)!r}).write_text('x')")
    assert calls == ["eval"] and not canary.exists()
    real_eval = builtins.eval  # bound before the guard: only the canary notices it
    with _forbid_code_execution(monkeypatch) as calls:
        real_eval("Path(c).write_text('x')", {"Path": Path, "c": str(canary)})
    assert calls == [] and canary.exists()


def test_code_execution_guard_allows_literal_eval(monkeypatch):
    """The Python-dict rung (ast.literal_eval) still works under the guard, so it is really exercised."""
    with _forbid_code_execution(monkeypatch) as calls:
        res = parse_intervention(_wrap("{'content': 'Let\\'s recount.', 'location': 2}"), 6)
    assert (res.status, res.content, calls) == ("ok", "Let's recount.", [])


# --------------------------------------------------------------------------- #
# Quote: the proposer points at the error by quoting it
# --------------------------------------------------------------------------- #

# The substeps the proposer was shown, in order (substep k is QUOTE_STEPS[k - 1]).
QUOTE_STEPS = [
    'Let $a = 6$ and $b = 10$; we need "half of a + b".',
    "First, 6 + 4 = 10.",
    "Then 6 + 10 = 60.",
    "Halving: $\\frac{60}{2} = 30$.",
    "Halving again to check: $\\frac{60}{2} = 30$, so \\boxed{30}.",
]

# (id, output, num_substeps, status, location, location_from, quote_location, stated_location)
QUOTE_CASES = [
    # --- the quote names the substep --------------------------------------- #
    (
        "quote_only",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60"}'),
        5,
        "ok",
        3,
        "quote",
        3,
        None,
    ),
    (
        "quote_agrees_with_location",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60", "location": 3}'),
        5,
        "ok",
        3,
        "quote",
        3,
        3,
    ),
    (
        "quote_beats_miscounted_location",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60", "location": 2}'),
        5,
        "ok",
        3,
        "quote",
        3,
        2,
    ),
    (
        "quote_beats_location_past_end",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60", "location": 9}'),
        5,
        "ok",
        3,
        "quote",
        3,
        9,
    ),
    (
        "quote_beats_unreadable_location",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60", "location": "the third"}'),
        5,
        "ok",
        3,
        "quote",
        3,
        None,
    ),
    (
        "quote_key_capitalised",
        _wrap('{"Content": "Recompute 6 + 10.", "QUOTE": "6 + 10 = 60", "Location": 1}'),
        5,
        "ok",
        3,
        "quote",
        3,
        1,
    ),
    # --- several substeps hold the quote ----------------------------------- #
    (
        "two_matches_location_chooses",
        _wrap('{"content": "Halve again.", "quote": "\\\\frac{60}{2} = 30", "location": 5}'),
        5,
        "ok",
        5,
        "quote",
        5,
        5,
    ),
    (
        "two_matches_location_elsewhere_first",
        _wrap('{"content": "Halve again.", "quote": "\\\\frac{60}{2} = 30", "location": 2}'),
        5,
        "ok",
        4,
        "quote",
        4,
        2,
    ),
    (
        "two_matches_no_location_first",
        _wrap('{"content": "Halve again.", "quote": "\\\\frac{60}{2} = 30"}'),
        5,
        "ok",
        4,
        "quote",
        4,
        None,
    ),
    # --- whitespace and wrapping ------------------------------------------- #
    (
        "quote_without_spaces",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6+10=60", "location": 2}'),
        5,
        "ok",
        3,
        "quote",
        3,
        2,
    ),
    (
        "quote_whitespace_runs_and_newline",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "Then  6 +\\n 10 = 60", "location": 2}'),
        5,
        "ok",
        3,
        "quote",
        3,
        2,
    ),
    (
        "quote_with_copied_substep_label",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "**Substep 3:** Then 6 + 10 = 60", "location": 2}'),
        5,
        "ok",
        3,
        "quote",
        3,
        2,
    ),
    (
        "quote_wrapped_in_marks_and_ellipses",
        _wrap('{"content": "Recompute 6 + 10.", "quote": "\\u201c...6 + 10 = 60\\u2026\\u201d", "location": 2}'),
        5,
        "ok",
        3,
        "quote",
        3,
        2,
    ),
    # --- the quote names nothing: location decides, as without a quote ---- #
    (
        "quote_no_match_falls_back_to_location",
        _wrap('{"content": "Recompute.", "quote": "7 * 7 = 50", "location": 2}'),
        5,
        "ok",
        2,
        "location",
        None,
        2,
    ),
    (
        "quote_no_match_location_past_end",
        _wrap('{"content": "Recompute.", "quote": "7 * 7 = 50", "location": 6}'),
        5,
        "bad_location",
        6,
        "location",
        None,
        6,
    ),
    (
        "quote_no_match_no_location",
        _wrap('{"content": "Recompute.", "quote": "7 * 7 = 50"}'),
        5,
        "bad_location",
        None,
        None,
        None,
        None,
    ),
    (
        "quote_too_short_falls_back",  # "60" occurs in three substeps; too short to name one
        _wrap('{"content": "Recompute.", "quote": "60", "location": 2}'),
        5,
        "ok",
        2,
        "location",
        None,
        2,
    ),
    (
        "quote_too_short_no_location",
        _wrap('{"content": "Recompute.", "quote": " = 6 "}'),
        5,
        "bad_location",
        None,
        None,
        None,
        None,
    ),
    (
        "quote_only_in_unshown_substep",  # substeps 4-5 were cut from the prompt
        _wrap('{"content": "Halve again.", "quote": "so \\\\boxed{30}", "location": 2}'),
        3,
        "ok",
        2,
        "location",
        None,
        2,
    ),
    (
        "empty_quote_is_no_quote",  # no location and no usable quote: as before the field
        _wrap('{"content": "Recompute.", "quote": ""}'),
        5,
        "bad_json",
        None,
        None,
        None,
        None,
    ),
    # --- recovered by the other rungs -------------------------------------- #
    (
        "quote_python_dict",
        _wrap("{'content': 'Recompute.', 'quote': 'Then 6 + 10 = 60', 'location': 1}"),
        5,
        "ok",
        3,
        "quote",
        3,
        1,
    ),
    (
        "quote_trailing_comma",
        _wrap('{"content": "Recompute.", "quote": "Then 6 + 10 = 60", "location": 1,}'),
        5,
        "ok",
        3,
        "quote",
        3,
        1,
    ),
]

# Broken text only the tolerant scanner reads: (id, output, content, quote, location, stated_location).
QUOTE_TOLERANT_CASES = [
    (
        "inner_quotes_and_unterminated",
        '<intervention>\n{"content": "It is 16, not "60".", "quote": "6 + 10 = 60", "location": 2,',
        'It is 16, not "60".',
        "6 + 10 = 60",
        3,
        2,
    ),
    (
        "content_missing_closing_quote",
        _wrap('{"content": "Recompute the sum, "quote": "6 + 10 = 60", "location": 2}'),
        "Recompute the sum,",
        "6 + 10 = 60",
        3,
        2,
    ),
    (
        "unquoted_keys",
        _wrap('{content: "Recompute.", quote: "6+10 = 60", location: 2}'),
        "Recompute.",
        "6+10 = 60",
        3,
        2,
    ),
    (
        "markdown_fields",
        _wrap("**Content:** Recompute the sum.\n**Quote:** Then 6 + 10 = 60\n**Location:** Substep 2"),
        "Recompute the sum.",
        "Then 6 + 10 = 60",
        3,
        2,
    ),
    (
        "quote_before_content_with_inner_quotes",
        _wrap('{"quote": "6 + 10 = 60", "content": "Redo "6 + 10" slowly.", "location": 2}'),
        'Redo "6 + 10" slowly.',
        "6 + 10 = 60",
        3,
        2,
    ),
    (
        "quote_holding_quote_marks",
        _wrap('{"content": "Recompute, "quote": "we need "half of a + b"", "location": 3}'),
        "Recompute,",
        'we need "half of a + b"',
        1,
        3,
    ),
    (
        "unterminated_quote_value",
        '<intervention>\n{"content": "Recompute.", "location": 2, "quote": "Then 6 + 10 = 60',
        "Recompute.",
        "Then 6 + 10 = 60",
        3,
        2,
    ),
]


@pytest.mark.parametrize(
    "output,n,status,location,location_from,quote_location,stated",
    [c[1:] for c in QUOTE_CASES],
    ids=[c[0] for c in QUOTE_CASES],
)
def test_quote_locates_the_error(output, n, status, location, location_from, quote_location, stated):
    res = parse_intervention(output, n, QUOTE_STEPS)
    assert res.status == status, res
    assert (res.location, res.location_from, res.quote_location, res.stated_location) == (
        location,
        location_from,
        quote_location,
        stated,
    ), res
    assert res.quote_disagrees == (quote_location is not None and stated is not None and quote_location != stated)


@pytest.mark.parametrize(
    "output,content,quote,location,stated",
    [c[1:] for c in QUOTE_TOLERANT_CASES],
    ids=[c[0] for c in QUOTE_TOLERANT_CASES],
)
def test_quote_recovered_from_broken_text(output, content, quote, location, stated):
    text = parse_module._strip_fences(extract_last_block(output)).strip()
    assert parse_module._try_structured(text) is None  # no structured rung reads it: the scanner does
    res = parse_intervention(output, 5, QUOTE_STEPS)
    assert (res.status, res.content, res.quote) == ("ok", content, quote), res
    assert (res.location, res.location_from, res.stated_location) == (location, "quote", stated), res


def test_quote_disagreement_is_recorded():
    res = parse_intervention(
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60", "location": 2}'), 5, QUOTE_STEPS
    )
    assert (res.location, res.stated_location, res.quote_location, res.location_from) == (3, 2, 3, "quote")
    assert res.quote_disagrees
    agree = parse_intervention(
        _wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60", "location": 3}'), 5, QUOTE_STEPS
    )
    assert not agree.quote_disagrees


def test_quote_latex_and_escapes():
    # JSON-escaped backslashes, raw LaTeX backslashes (\f, \b are never form feed / backspace),
    # and an escaped double quote all decode to the attempt's text.
    cases = [
        (r'"quote": "\\frac{60}{2} = 30$, so \\boxed{30}"', r"\frac{60}{2} = 30$, so \boxed{30}", 5),
        (r'"quote": "$\frac{60}{2} = 30$, so \boxed{30}"', r"$\frac{60}{2} = 30$, so \boxed{30}", 5),
        (r'"quote": "we need \"half of a + b\""', 'we need "half of a + b"', 1),
        (r'"quote": "6 + 10 = 60\nso"', None, None),  # \n + "so": a newline; "60 so" is in no substep
    ]
    for field, quote, location in cases:
        res = parse_intervention(_wrap(f'{{"content": "Redo it.", {field}, "location": 2}}'), 5, QUOTE_STEPS)
        if quote is None:
            assert (res.quote, res.quote_location, res.location) == ("6 + 10 = 60\nso", None, 2), res
        else:
            assert (res.quote, res.quote_location, res.location) == (quote, location, location), res


@pytest.mark.parametrize("case", QUOTE_CASES, ids=[c[0] for c in QUOTE_CASES])
def test_without_substeps_the_quote_is_ignored(case):
    """Old callers (no ``substeps``): status, content and location as for the same payload with the
    quote under a key the parser does not know (which the structured rungs have always skipped)."""
    output, n = case[1], case[2]
    renamed = re.sub(r"([\"'])quote\1(\s*:)", r"\1xnote\1\2", output, flags=re.IGNORECASE)
    assert renamed != output
    res, old = parse_intervention(output, n), parse_intervention(renamed, n)
    assert (res.status, res.content, res.location) == (old.status, old.content, old.location), res
    assert res.location_from in (None, "location") and res.location_from == old.location_from
    assert res.quote_location is None and not res.quote_disagrees


def test_without_substeps_quote_only_payload_is_bad_json():
    res = parse_intervention(_wrap('{"content": "Recompute 6 + 10.", "quote": "6 + 10 = 60"}'), 5)
    assert (res.status, res.content, res.location, res.quote) == ("bad_json", "Recompute 6 + 10.", None, "6 + 10 = 60")
    res = parse_intervention(_wrap('{"content": "Recompute.", "quote": "6 + 10 = 60", "location": 2}'), 5)
    assert (res.status, res.location, res.location_from, res.stated_location) == ("ok", 2, "location", 2)


@pytest.mark.parametrize("case", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_substeps_change_nothing_without_a_quote(case):
    _, output, n, *_ = case
    steps = [f"Substep text {k} with 6 + 10 = 60 and Recount." for k in range(1, n + 1)]
    old, new = parse_intervention(output, n), parse_intervention(output, n, steps)
    assert (new.status, new.content, new.location, new.raw) == (old.status, old.content, old.location, old.raw)
    assert new.quote is None and new.location_from != "quote"


def test_quote_substeps_matching_rules():
    steps = ["a + b = c", "so x a+b y", "Then 6 + 10 = 60."]
    assert quote_substeps("a + b", steps) == [1]  # exact (normalised) first: the space-free form would also hit 2
    assert quote_substeps("a +  b", steps) == [1]  # whitespace runs collapse
    assert quote_substeps("x a + b", steps) == [2]  # only the space-free form matches
    assert quote_substeps("6+10=60", steps) == [3]
    assert quote_substeps("a+b", steps) == [2]  # exact, in substep 2 only
    assert quote_substeps("6 + 10", []) == []
    assert quote_substeps("=", steps) == [] and quote_substeps("60", steps) == []  # too short to locate
    assert quote_substeps("  \t ", steps) == []
    assert quote_substeps("Then 6 + 10 = 70", steps) == []
    assert quote_substeps("then 6 + 10 = 60", steps) == []  # case counts
    assert MIN_QUOTE_CHARS == 3
    assert quote_substeps("c =d", ["x", "a + b = c = d"]) == [2] and quote_substeps("c =", ["a + b = c = d"]) == []

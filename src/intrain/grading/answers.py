"""Reading the final answer out of model text, and comparing answers as strings.

A module of its own because the parent runs it on untrusted model text: everything here is plain
string work, linear in the text, and nothing here reaches math-verify or SymPy. It also settles the
cheap verdicts (equal as strings, two distinct integers) that spare a worker round trip.
"""

from __future__ import annotations

import re
from collections import deque

# The lookahead keeps longer command names such as \boxedanswer from matching.
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_SPACE_FORM_TOKEN_RE = re.compile(r"[^\s$]+")
# What brace matching has to look at: an escape pair (\{, \}, \\) or a run of braces. Ordinary
# characters are skipped inside the regex engine and a run of braces is one step, so that
# megabyte-long model outputs cost the parent milliseconds rather than seconds.
_BRACE_RUN_RE = re.compile(r"\\.|\{+|\}+", re.DOTALL)


def _matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or None if unbalanced."""
    depth = 0
    # An escaped \{ or \} is a literal set brace, and \\ must not escape what follows it.
    for token in _BRACE_RUN_RE.finditer(text, open_idx):
        run = token.group()
        if run[0] == "{":
            depth += len(run)
        elif run[0] == "}":
            if len(run) >= depth:
                return token.start() + depth - 1
            depth -= len(run)
    return None


def _brace_pairs(text: str) -> dict[int, int]:
    """Every balanced ``{`` index mapped to its ``}``, in one linear pass (escapes as above)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []  # indices of the braces still open, innermost last
    for token in _BRACE_RUN_RE.finditer(text):
        run = token.group()
        if run[0] == "{":
            stack.extend(range(token.start(), token.end()))
        elif run[0] == "}":
            closed = min(len(run), len(stack))  # a "}" with nothing open closes nothing
            if closed:
                opened = stack[len(stack) - closed :]
                del stack[len(stack) - closed :]
                pairs.update(zip(reversed(opened), range(token.start(), token.start() + closed)))
    return pairs


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``.

    Returns None when there is no box, when the last box is unbalanced (usually a truncated
    generation: an earlier box is then an intermediate result, not the final answer) or empty.
    """
    # maxlen=1 keeps only the last match: a flood of boxes costs no memory.
    last_box = deque(_BOX_RE.finditer(text), maxlen=1)
    if not last_box:
        return None
    after = last_box[0].end()
    start = after
    while start < len(text) and text[start].isspace():
        start += 1
    if start < len(text) and text[start] == "{":
        end = _matching_brace(text, start)
        content = None if end is None else text[start + 1 : end]
    elif start > after:  # "\boxed 5": TeX's space form, read up to whitespace or the closing $
        token = _SPACE_FORM_TOKEN_RE.match(text, start)
        content = None if token is None else token.group()
    else:
        content = None
    if content is None or not content.strip():
        return None
    return content.strip()


# Commands whose braced argument is kept and whose name is dropped when comparing as strings.
_UNWRAP_RE = re.compile(r"\\(?:boxed|fbox|text|textbf|textit|textrm|mathrm|mbox)\s*\{")
# Sizing and spacing commands carry no meaning for an answer; the lookahead spares \rightarrow.
_NOISE_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])|\\[!,;: ]")
_WHITESPACE_RE = re.compile(r"\s+")


def _unwrap(text: str) -> str:
    """``text`` with each ``\\text{...}``-like wrapper replaced by its content, nested ones too.

    From the first wrapper whose brace is never closed on, the text is kept as it is. Iterative and
    linear on purpose: model text can nest wrappers thousands deep, which a recursive version
    turns into a RecursionError, and a per-wrapper brace search into quadratic time, in the parent.
    """
    matches = list(_UNWRAP_RE.finditer(text))
    if not matches:  # the common case, and it skips the brace scan
        return text
    pairs = _brace_pairs(text)
    dropped: list[tuple[int, int]] = []  # [start, end) spans to cut: command names and their "}"
    for match in matches:
        close = pairs.get(match.end() - 1)
        if close is None:
            # A balanced wrapper cannot contain this unclosed brace, so nothing already cut lies
            # beyond this point.
            break
        dropped.append((match.start(), match.end()))
        dropped.append((close, close + 1))
    dropped.sort()
    parts: list[str] = []
    pos = 0
    for start, end in dropped:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def normalize_answer(text: str) -> str:
    """Canonical string form of an answer: lowercase, no ``$``, ``\\boxed{}``, ``\\text{}``,
    ``\\left``/``\\right``, LaTeX spacing, whitespace or trailing periods."""
    text = _NOISE_RE.sub("", _unwrap(text))
    text = _WHITESPACE_RE.sub("", text.replace("$", ""))
    return text.lower().rstrip(".")


def _same_string(gold: str, answer: str) -> bool:
    normalized = normalize_answer(gold)
    return normalized != "" and normalized == normalize_answer(answer)


# A plain integer in its one canonical spelling (no sign on 0, no leading zeros, no separators), short
# enough that math-verify compares it exactly.
_CANONICAL_INT_RE = re.compile(r"0|-?[1-9][0-9]{0,14}")


def _distinct_integers(gold: str, answer: str) -> bool:
    """Two different integers, each spelt canonically: unequal without math-verify. Most wrong
    answers to integer-answer problems (the arithmetic family, AIME-style sets) look like this.
    Only `$`, surrounding space and a final period are dropped first: normalize_answer's unwrapping
    would join "1\\text{2}" into "12", which math-verify reads otherwise."""
    a, b = _bare(gold), _bare(answer)
    return a != b and _CANONICAL_INT_RE.fullmatch(a) is not None and _CANONICAL_INT_RE.fullmatch(b) is not None


def _bare(text: str) -> str:
    return text.strip().rstrip(".").strip().strip("$").strip()

"""Parse the proposer's ``<intervention>`` block into content + location (paper §3.5).

The proposer ends its answer with::

    <intervention>
    { "content": INSERT_STEP_CONTENT, "location": INSERT_STEP_NUMBER }
    </intervention>

and may add ``"quote": "<the erroneous text, copied from the attempt>"`` (our extension, not the
paper's; see **Quote** below).

Model output is messy, so :func:`parse_intervention` is a ladder of increasingly
tolerant attempts: tag block extraction, then strict JSON, JSON without trailing
commas, ``ast.literal_eval`` (Python dict syntax; it only builds literals), and a
regex/scanner for broken dict text and markdown ``Content:``/``Location:`` fields.
Each rung repairs a failure seen in real proposer output; they share the block
extraction and the LaTeX-aware escape handling.  Nothing here ever calls
``eval``/``exec`` or compiles model text to code.

The generic JSON repair is ours rather than a library's: json-repair 0.64.6 in
place of our rungs passed 73-75 of the 79 unit-test parse cases, and 78 only as
an extra last rung (it cuts content at an unescaped inner quote, misreads
triple-quoted strings, and turns a string truncated mid-word into content).

Design decisions
----------------
* **Which block.**  Only the *last* tag block counts (as in the reference
  notebook).  A block starts at the opening tag nearest before the last closing
  tag, so ``<intervention>`` mentions in prose earlier in the verification log
  do not swallow text.  If the output ends with an opening tag that is never
  closed (truncation, forgotten tag) and its tail looks like a payload (has a
  ``{`` or a ``content``/``location`` key) that tail is used instead.  Complete
  blocks that are clearly inline prose mentions (tag pair inside a sentence,
  no payload) are skipped.
* **Backslashes / LaTeX.**  JSON escapes collide with LaTeX (``\\frac`` = form
  feed + ``rac``, ``\\theta`` = tab + ``heta``, ``\\neq`` = newline + ``eq``).  We
  decode backslashes ourselves, before any JSON parser sees them:

  - ``\\\\`` -> ``\\``; ``\\"`` -> ``"``; ``\\'`` -> ``'``; ``\\/`` -> ``/``;
    ``\\uXXXX`` (4 hex digits) -> that character;
  - ``\\n`` -> newline, *unless* the letters that follow form a known LaTeX
    command starting with ``n`` (``\\neq``, ``\\nabla``, ``\\not``, ``\\nu`` ...,
    see ``escapes._LATEX_N``); so ``\\nThe next step`` is a newline but ``\\neq`` is LaTeX;
  - ``\\t`` / ``\\r`` -> tab / carriage return only when *not* followed by a
    letter (``\\theta``, ``\\times``, ``\\text``, ``\\right`` stay LaTeX);
  - ``\\b`` and ``\\f`` are always literal (``\\beta``, ``\\frac``, ``\\boxed``;
    a model never means backspace/form feed);
  - any other backslash is kept literally (``\\(``, ``\\[``, ``\\{``, ``\\,``,
    ``\\sqrt``, ``\\cdot`` ...).
* **Location.**  Must be an integer in ``1..num_substeps``.  Strings such as
  ``"Substep 12"``/``"12"``/``12.0`` are coerced (first number found).
  ``num_substeps + 1`` ("append after the last step") is ``bad_location``:
  the intervention *replaces* substep ``location``, so the location has to
  name an existing substep (the reference code would silently build a prefix of
  the whole attempt, which no longer ends at the error).
* **Quote.**  Small proposers find the false equation but name the wrong
  substep number: they do not count substeps.  So a proposer may point at the
  error by quoting it, in an optional ``quote`` key (case-insensitive like the
  others, recovered by every rung including the scanner, where a bare
  ``quote:`` only counts at the start of a line or after ``{``/``,``, and
  unescaped like content).  The caller passes the texts of the substeps the
  proposer was shown (``substeps``); the quote names the substep that contains
  it.  Matching: the quote is trimmed of what models wrap around a quotation
  (a copied ``**Substep k:**`` label, quote marks, backticks, ``$``,
  ellipses); then it must occur in a substep as a substring after whitespace
  normalisation (runs collapsed to one space, stripped), or, only if no
  substep matches that way, with all whitespace removed (``6+10=60`` for
  ``6 + 10 = 60``).  Case and LaTeX are compared as written.  Quotes of fewer
  than ``MIN_QUOTE_CHARS`` (3) non-space characters match nothing (``=``,
  ``60`` occur everywhere).  Only substeps ``1..num_substeps`` are searched.

  - One matching substep: it is the location, even when ``location`` names
    another one -- the quote is what the model actually pointed at, the number
    is what it miscounted.
  - Several: the stated ``location`` if it is one of them, else the first.
  - None: ``location`` decides exactly as without a quote; with no
    ``location`` either the status is ``bad_location`` (the model tried to
    locate the error, and the attempt does not hold what it quoted).

  A payload with content and a resolving quote but no ``location`` is
  therefore ``ok``, not ``bad_json``.  The result records ``quote`` (as
  parsed), ``quote_location`` (the substep the quote resolved to),
  ``stated_location`` (the ``location`` key, coerced) and ``location_from``
  (``"quote"``/``"location"``), so callers can count how often each decided
  and how often they disagreed (``quote_disagrees``).  Without ``substeps``
  (callers that predate the field) the quote is reported but never consulted:
  status and location are what they were before the field existed, and so is
  content, except that in broken text the scanner now ends the content before
  a ``quote`` key instead of running on into it.
* **Status precedence.**  ``no_tag`` (no opening tag) > ``empty`` (block empty,
  ``{}``, content empty/whitespace or a placeholder such as
  ``INSERT_STEP_CONTENT`` -- checked before the location, since the echoed
  template has a placeholder location too) > ``bad_json`` (content key cannot
  be recovered, or neither a location key nor -- with ``substeps`` -- a quote
  key) > ``bad_location`` (location present but not an integer in range and no
  resolving quote; or a quote that matches no substep and no location) >
  ``ok``.  ``leak`` and ``not_first`` are assigned by
  callers (:func:`intrain.interventions.leaks.leaks_answer`,
  :func:`intrain.interventions.selection.mark_not_first`).
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from intrain.interventions.escapes import fix_escapes, unescape_model_string
from intrain.interventions.scanner import scan_fields

__all__ = [
    "MIN_QUOTE_CHARS",
    "STATUSES",
    "ParsedIntervention",
    "extract_last_block",
    "parse_intervention",
    "quote_substeps",
    "unescape_model_string",
]

STATUSES = ("ok", "no_tag", "bad_json", "bad_location", "empty", "leak", "not_first")


@dataclass(frozen=True)
class ParsedIntervention:
    status: str
    content: str | None
    location: int | None
    raw: str | None  # the raw text inside the last tag block (None when no tag)
    # The optional ``quote`` field (see the module docstring).  All default to "no quote", so the
    # four-field constructor and results without a quote read exactly as before the field existed.
    quote: str | None = None  # the quoted erroneous text as parsed (None when absent)
    quote_location: int | None = None  # the substep the quote resolved to (None: no substeps / no match)
    stated_location: int | None = None  # the ``location`` key as written, coerced (None when absent/unreadable)
    location_from: Literal["location", "quote"] | None = None  # which field ``location`` came from

    @property
    def quote_disagrees(self) -> bool:
        """The quote resolved to a substep other than the stated location (the quote won)."""
        return (
            self.quote_location is not None
            and self.stated_location is not None
            and self.quote_location != self.stated_location
        )


# --------------------------------------------------------------------------- #
# Tag block extraction
# --------------------------------------------------------------------------- #

_OPEN_RE = re.compile(r"<\s*intervention\s*>", re.IGNORECASE)
_CLOSE_RE = re.compile(r"<\s*/\s*intervention\s*>", re.IGNORECASE)
_PAYLOAD_HINT_RE = re.compile(r"\{|(?<![A-Za-z])(?:content|location)(?![A-Za-z])", re.IGNORECASE)


def _looks_like_payload(text: str) -> bool:
    return bool(_PAYLOAD_HINT_RE.search(text))


def _is_inline(output: str, open_start: int, close_end: int) -> bool:
    """True if the tag pair sits inside a line of prose (text on either side)."""
    line_start = output.rfind("\n", 0, open_start) + 1
    line_end = output.find("\n", close_end)
    if line_end == -1:
        line_end = len(output)
    before = output[line_start:open_start].strip(" \t*`>-")
    after = output[close_end:line_end].strip(" \t*`")
    return bool(before) or bool(after)


def extract_last_block(output: str) -> str | None:
    """Raw text inside the last ``<intervention>`` block, or None without a tag."""
    opens = [m for m in _OPEN_RE.finditer(output)]
    if not opens:
        return None
    closes = [m for m in _CLOSE_RE.finditer(output)]

    # Complete blocks: each closing tag paired with the nearest opening tag before it.
    blocks: list[tuple[int, int, int, int]] = []  # (open_start, inner_start, inner_end, close_end)
    oi = 0
    last_open: re.Match[str] | None = None
    for c in closes:
        while oi < len(opens) and opens[oi].end() <= c.start():
            last_open = opens[oi]
            oi += 1
        if last_open is not None and (not blocks or last_open.start() > blocks[-1][0]):
            blocks.append((last_open.start(), last_open.end(), c.start(), c.end()))

    # Unterminated tail: last opening tag after the last closing tag.
    tail: str | None = None
    if not closes or opens[-1].start() >= closes[-1].end():
        tail = output[opens[-1].end() :]

    if tail is not None and (not blocks or _looks_like_payload(tail)):
        return tail
    if not blocks:  # pragma: no cover - tail is always set when there is no block
        return tail
    for open_start, inner_start, inner_end, close_end in reversed(blocks):
        inner = output[inner_start:inner_end]
        if _looks_like_payload(inner) or not _is_inline(output, open_start, close_end):
            return inner
    # Everything is an inline prose mention: report the last one.
    return output[blocks[-1][1] : blocks[-1][2]]


# --------------------------------------------------------------------------- #
# Structured parse attempts
# --------------------------------------------------------------------------- #

_FENCE_LINE_RE = re.compile(r"^[ \t]*```[A-Za-z0-9_+-]*[ \t]*$", re.MULTILINE)
_FENCE_EDGE_RE = re.compile(r"^\s*```[A-Za-z0-9_+-]*|```\s*$")


def _strip_fences(text: str) -> str:
    if "```" not in text:
        return text
    text = _FENCE_LINE_RE.sub("", text)
    return _FENCE_EDGE_RE.sub("", text)


def _strip_trailing_commas(text: str) -> str:
    """Remove commas directly before ``}``/``]`` outside double-quoted strings."""
    out: list[str] = []
    in_str = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if in_str:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch == ",":
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            if j >= n or text[j] not in "}]":
                out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _try_structured_at(text: str, start: int) -> dict[str, Any] | None:
    decoder = json.JSONDecoder(strict=False)
    fixed = fix_escapes(text[start:], python=False)
    for candidate in (fixed, _strip_trailing_commas(fixed)):
        try:
            obj, _ = decoder.raw_decode(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
    end = text.rfind("}")
    if end > start:
        py = fix_escapes(text[start : end + 1], python=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = ast.literal_eval(py)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            return obj
    return None


def _try_structured(text: str, max_starts: int = 8) -> dict[str, Any] | None:
    """strict JSON -> repaired JSON -> ast.literal_eval, from successive ``{``.

    Returns the fields (see :func:`_fields_from_dict`) of the first object that
    has a ``content`` or ``location`` key, else None.  Trying later braces
    handles text such as ``Content: ... \\boxed{}`` or a short lead-in line
    before the object.
    """
    start = text.find("{")
    tries = 0
    while start != -1 and tries < max_starts:
        obj = _try_structured_at(text, start)
        if obj is not None:
            fields = _fields_from_dict(obj)
            if fields is not None:
                return fields
        tries += 1
        start = text.find("{", start + 1)
    return None


def _norm_key(key: Any) -> str:
    return str(key).strip().strip("*").strip().lower()


def _fields_from_dict(d: dict[str, Any]) -> dict[str, Any] | None:
    """Map {content, location} from a parsed dict (keys case-insensitive, one level of nesting)."""
    norm = {_norm_key(k): v for k, v in d.items()}
    if "content" in norm or "location" in norm:
        return norm
    for v in d.values():
        if isinstance(v, dict):
            inner = {_norm_key(k): vv for k, vv in v.items()}
            if "content" in inner or "location" in inner:
                return inner
    return None


# --------------------------------------------------------------------------- #
# Field validation
# --------------------------------------------------------------------------- #

_SCREAMING_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_PLACEHOLDER_RE = re.compile(
    r"(?:\.{2,}|…+|n/?a|none|null|nil|todo|tbd|empty|content|step content|"
    r"insert[ _]step[ _]content(?: here)?|your (?:intervention|content|step)(?: here)?|"
    r"intervention (?:content|step)(?: here)?)",
    re.IGNORECASE,
)
_NO_ERROR_RE = re.compile(r"no (?:critical )?(?:error|intervention)\b", re.IGNORECASE)


def _is_placeholder(text: str) -> bool:
    s = text.strip().strip("\"'`*").strip()
    s = s.strip("<>[](){}").strip()
    if not s:
        return True
    if _SCREAMING_PLACEHOLDER.fullmatch(s) or _PLACEHOLDER_RE.fullmatch(s):
        return True
    return len(s) < 80 and bool(_NO_ERROR_RE.match(s))


_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _coerce_location(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        m = _NUM_RE.search(value)
        if not m:
            return None
        num = float(m.group(0))
        return int(num) if num.is_integer() else None
    return None


def _content_text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)):
        text = "\n".join(str(x) for x in value if x is not None)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        return None
    return text.replace("\r\n", "\n").strip()


def _quote_text(value: Any) -> str | None:
    """The parsed quote as text; None when absent, not text, empty or a placeholder."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        return None
    text = text.replace("\r\n", "\n").strip()
    return None if _is_placeholder(text) else text


# --------------------------------------------------------------------------- #
# Quote -> substep
# --------------------------------------------------------------------------- #

# Fewer non-space characters than this match too much ("=", "x", "60") to name a substep.
MIN_QUOTE_CHARS = 3
# The prompt renders substeps as "**Substep k:** text"; a model copying the line copies the label too.
_QUOTE_LABEL_RE = re.compile(r"^\s*\**\s*substep\s*\d+\s*\**\s*:?\s*\**\s*", re.IGNORECASE)
# Wrapping quote marks, backticks and math dollars the model adds around the quoted text.
_QUOTE_EDGE = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb$ \t\n"


def _trim_quote(quote: str) -> str:
    """Drop what a model wraps around a quotation: a copied substep label, quote marks, ellipses.

    Trimming only ever shortens the needle, so it can only add matches, never lose one.
    """
    text = _QUOTE_LABEL_RE.sub("", quote, count=1)
    prev = None
    while prev != text:
        prev = text
        text = text.strip(_QUOTE_EDGE)
        for ellipsis in ("...", "\u2026"):
            text = text.removeprefix(ellipsis).removesuffix(ellipsis)
    return text


def quote_substeps(quote: str, substeps: Sequence[str]) -> list[int]:
    """1-based numbers of the substeps that contain ``quote`` (see the module docstring).

    Exact substring after whitespace normalisation first; only if that finds nothing, the same
    with all whitespace removed (``6+10=60`` for ``6 + 10 = 60``).
    """
    needle = _trim_quote(quote)
    bare = "".join(needle.split())
    if len(bare) < MIN_QUOTE_CHARS:
        return []
    spaced = " ".join(needle.split())
    hits = [i for i, step in enumerate(substeps, 1) if spaced in " ".join(step.split())]
    if hits:
        return hits
    return [i for i, step in enumerate(substeps, 1) if bare in "".join(step.split())]


def parse_intervention(output: str, num_substeps: int, substeps: Sequence[str] | None = None) -> ParsedIntervention:
    """Parse the last ``<intervention>`` block of a proposer output.

    ``substeps`` are the texts of the substeps the proposer was shown, in order (substep ``k`` is
    ``substeps[k - 1]``); with them an optional ``quote`` field can name the location (see the module
    docstring).  Without them the quote is reported but never consulted.

    Returns a :class:`ParsedIntervention` with status among
    ``ok / no_tag / bad_json / bad_location / empty`` (see module docstring).
    """
    raw = extract_last_block(output or "")
    if raw is None:
        return ParsedIntervention("no_tag", None, None, None)
    text = _strip_fences(raw).strip()
    if not text or re.fullmatch(r"\{\s*\}", text) or (not _looks_like_payload(text) and _is_placeholder(text)):
        return ParsedIntervention("empty", None, None, raw)

    fields = _try_structured(text)
    if fields is None or "content" not in fields:
        tol = scan_fields(text)
        if tol is not None and (fields is None or "content" in tol):
            fields = tol
    if fields is None or "content" not in fields:
        return ParsedIntervention("bad_json", None, None, raw)

    content = _content_text(fields["content"])
    if content is None:
        return ParsedIntervention("bad_json", None, None, raw)
    if _is_placeholder(content):
        return ParsedIntervention("empty", None, None, raw)

    quote = _quote_text(fields.get("quote"))
    stated = _coerce_location(fields["location"]) if "location" in fields else None
    if quote is not None and substeps is not None:
        # Only substeps the location could name: a quote of a substep past ``num_substeps`` (not
        # shown, or the caller's bound) must not produce a location the caller cannot use.
        hits = quote_substeps(quote, list(substeps)[: max(num_substeps, 0)])
        if hits:
            # The quote is what the model pointed at; it beats a (miscounted) location.  Among
            # several matching substeps the stated location breaks the tie, else the first.
            chosen = stated if stated in hits else hits[0]
            return ParsedIntervention(
                "ok",
                content,
                chosen,
                raw,
                quote=quote,
                quote_location=chosen,
                stated_location=stated,
                location_from="quote",
            )
        if "location" not in fields:  # a quote that names nothing, and no location to fall back on
            return ParsedIntervention("bad_location", content, None, raw, quote=quote)
    if "location" not in fields:
        return ParsedIntervention("bad_json", content, None, raw, quote=quote)
    where: Literal["location"] | None = None if stated is None else "location"
    status = "ok" if stated is not None and 1 <= stated <= num_substeps else "bad_location"
    return ParsedIntervention(status, content, stated, raw, quote=quote, stated_location=stated, location_from=where)

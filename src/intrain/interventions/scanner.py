"""The last rung of the intervention parser: a regex/scanner that reads ``content``, ``location`` and
``quote`` out of dict-like text that no structured parser accepts (unescaped inner quotes, missing
commas or braces, markdown ``**Content:**`` fields, text cut off mid-string). See
`intrain.interventions.parse` for the rules it follows."""

from __future__ import annotations

import re
from typing import Any

from intrain.interventions.escapes import unescape_model_string


def _key_re(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?<![A-Za-z0-9_])(?:\*\*{name}\*\*\s*[:=]|\*\*{name}\s*[:=]\s*\*\*|[\"']?{name}[\"']?\s*[:=])\s*",
        re.IGNORECASE,
    )


_CONTENT_KEY = _key_re("content")
_LOCATION_KEY = _key_re("location")
# "quote" is an everyday word, so a bare ``quote:`` only counts as a key where a key can stand: after
# ``{``/``,`` or at the start of a line (optionally as a ``-``/``*`` bullet).  Quoted and bold keys
# count anywhere, like the other two.  Otherwise prose such as "the quote: ..." inside an unquoted
# content value would cut the content short.  (A lookbehind cannot say "after ``{`` or ``,`` and
# any spaces", it has to be fixed-width, hence the check in :func:`_quote_key_ok`.)
_QUOTE_KEY_ANY = _key_re("quote")


def _quote_key_ok(s: str, m: re.Match[str]) -> bool:
    if s[m.start()] != "q" and s[m.start()] != "Q":  # quoted ("quote":) or bold (**Quote:**)
        return True
    j = m.start() - 1
    while j >= 0 and s[j] in " \t":
        j -= 1
    if j >= 0 and s[j] in "-*":  # a markdown bullet
        j -= 1
        while j >= 0 and s[j] in " \t":
            j -= 1
    # After an opening quote mark the key is quoted after all: matching started inside ``"quote":``.
    return j < 0 or s[j] in "{,\n\"'"


def _quote_key_match(s: str, pos: int) -> re.Match[str] | None:
    m = _QUOTE_KEY_ANY.match(s, pos)
    return m if m and _quote_key_ok(s, m) else None


def _quote_key_search(s: str, start: int = 0, end: int | None = None) -> re.Match[str] | None:
    for m in _QUOTE_KEY_ANY.finditer(s, start, len(s) if end is None else end):
        if _quote_key_ok(s, m):
            return m
    return None


_GENERIC_KEY_AHEAD = re.compile(r"\s*,\s*[\"'][A-Za-z_][A-Za-z0-9_ ]*[\"']\s*:")
_END_AHEAD = re.compile(r"\s*,?\s*\}?\s*\Z")
_BRACE_AHEAD = re.compile(r"\s*,?\s*\}")
_ITEM_END_AHEAD = re.compile(r"\s*[,\]]")


def _is_escaped(s: str, p: int) -> bool:
    k, j = 0, p - 1
    while j >= 0 and s[j] == "\\":
        k += 1
        j -= 1
    return k % 2 == 1


_SEP_AHEAD = re.compile(r"\s*,?\s*")


def _field_ahead(s: str, p: int) -> bool:
    """A ``location`` or ``quote`` key follows ``s[p:]`` (after an optional comma)."""
    m = _SEP_AHEAD.match(s, p)
    return bool(m and (_LOCATION_KEY.match(s, m.end()) or _quote_key_match(s, m.end())))


def _next_field_key(s: str, start: int) -> re.Match[str] | None:
    """The first ``location`` or ``quote`` key at or after ``start``."""
    found = [m for m in (_LOCATION_KEY.search(s, start), _quote_key_search(s, start)) if m]
    return min(found, key=lambda m: m.start()) if found else None


def _find_closer(s: str, v: int, q: str) -> int | None:
    """Position of the quote closing a value string opened at ``s[v] == q``."""
    cands = [p for p in range(v + 1, len(s)) if s[p] == q and not _is_escaped(s, p)]
    for p in cands:  # followed by the location/quote key, or by the end of the object
        if _field_ahead(s, p + 1) or _END_AHEAD.match(s, p + 1):
            return p
    for p in cands:  # followed by some other quoted key
        if _GENERIC_KEY_AHEAD.match(s, p + 1):
            return p
    for p in cands:  # followed by a closing brace (trailing prose after the object)
        if _BRACE_AHEAD.match(s, p + 1):
            return p
    return None


def _read_list(s: str, v: int) -> tuple[list[str], int] | None:
    """Read ``[ "a", 'b', ... ]`` starting at ``s[v] == "["``; (items, end)."""
    items: list[str] = []
    i = v + 1
    n = len(s)
    while i < n:
        while i < n and (s[i].isspace() or s[i] == ","):
            i += 1
        if i >= n:
            return None
        if s[i] == "]":
            return items, i + 1
        if s[i] in "\"'":
            q = s[i]
            close = None
            for p in range(i + 1, n):
                if s[p] == q and not _is_escaped(s, p) and _ITEM_END_AHEAD.match(s, p + 1):
                    close = p
                    break
            if close is None:
                return None
            items.append(unescape_model_string(s[i + 1 : close]))
            i = close + 1
        else:
            j = i
            while j < n and s[j] not in ",]":
                j += 1
            items.append(s[i:j].strip())
            i = j
    return None


def scan_fields(text: str) -> dict[str, Any] | None:
    """Regex/scanner extraction of content and location from broken dict text."""
    out: dict[str, Any] = {}
    cm = _CONTENT_KEY.search(text)
    content_span: tuple[int, int] | None = None
    if cm:
        v = cm.end()
        content: Any = None
        end = None
        if text.startswith("[", v):
            got = _read_list(text, v)
            if got is not None:
                content, end = got
        elif text.startswith('"""', v) or text.startswith("'''", v):
            triple_close = text.find(text[v : v + 3], v + 3)
            if triple_close != -1:
                content, end = unescape_model_string(text[v + 3 : triple_close]), triple_close + 3
        elif v < len(text) and text[v] in "\"'":
            close = _find_closer(text, v, text[v])
            if close is not None:
                content, end = unescape_model_string(text[v + 1 : close]), close + 1
            else:  # missing closing quote: stop before a following location/quote key
                lm = _next_field_key(text, v + 1)
                if lm:
                    body = text[v + 1 : lm.start()].rstrip().rstrip(",").rstrip()
                    if body.endswith(text[v]):
                        body = body[:-1]
                    content, end = unescape_model_string(body), lm.start()
        else:  # unquoted value (placeholder, markdown "Content: ..." style)
            lm = _next_field_key(text, v)
            if lm:
                body, end = text[v : lm.start()], lm.start()
            else:
                body, end = text[v:], len(text)
            body = body.strip().rstrip(",").rstrip()
            if not lm and body.endswith("}"):
                body = body[:-1].rstrip().rstrip(",").rstrip()
            content = unescape_model_string(body)
        if end is not None:
            out["content"] = content
            content_span = (cm.start(), end)

    # Location: outside the content value (the word may appear inside content text).
    lm = None
    if content_span is not None:
        lm = _LOCATION_KEY.search(text, 0, content_span[0]) or _LOCATION_KEY.search(text, content_span[1])
    elif not cm:
        lm = _LOCATION_KEY.search(text)
    if lm:
        v = lm.end()
        if v < len(text) and text[v] in "\"'":
            close = text.find(text[v], v + 1)
            nl = text.find("\n", v + 1)
            stop = close if close != -1 else (nl if nl != -1 else len(text))
            out["location"] = text[v + 1 : stop]
        else:
            m = re.compile(r"[^,}\n]*").match(text, v)
            out["location"] = m.group(0).strip() if m else ""

    # Quote: also outside the content value, read by :func:`_read_quote`.
    qm = None
    if content_span is not None:
        qm = _quote_key_search(text, 0, content_span[0]) or _quote_key_search(text, content_span[1])
    elif not cm:
        qm = _quote_key_search(text)
    if qm:
        out["quote"] = _read_quote(text, qm.end())
    return out or None


_QUOTE_CLOSE_LOOSE = re.compile(r"[ \t]*(?:[,}\n]|\Z)")


def _any_key_ahead(s: str, p: int) -> bool:
    m = _SEP_AHEAD.match(s, p)
    if not m:  # pragma: no cover - the pattern matches the empty string
        return False
    q = m.end()
    if _GENERIC_KEY_AHEAD.match(s, p):
        return True
    return bool(_CONTENT_KEY.match(s, q) or _LOCATION_KEY.match(s, q) or _quote_key_match(s, q))


def _read_quote(s: str, v: int) -> str:
    """The value of a ``quote`` key starting at ``s[v]`` in broken dict text or markdown fields.

    A quoted value ends at the first closing quote followed by another key or the end of the
    object; failing that, at one followed by a comma, brace or line end (the quoted text itself may
    hold quote characters: ``He wrote "60", then ...``); failing that, at the end of the line.  An
    unquoted value (``**Quote:** 6 + 10 = 60``) runs to the end of its line or the next key on it.
    """
    if v < len(s) and s[v] in "\"'":
        q = s[v]
        cands = [p for p in range(v + 1, len(s)) if s[p] == q and not _is_escaped(s, p)]
        for p in cands:
            if _any_key_ahead(s, p + 1) or _END_AHEAD.match(s, p + 1) or _BRACE_AHEAD.match(s, p + 1):
                return unescape_model_string(s[v + 1 : p])
        for p in cands:
            if _QUOTE_CLOSE_LOOSE.match(s, p + 1):
                return unescape_model_string(s[v + 1 : p])
        nl = s.find("\n", v + 1)
        return unescape_model_string(s[v + 1 : nl if nl != -1 else len(s)].rstrip().rstrip(","))
    nl = s.find("\n", v)
    line_end = nl if nl != -1 else len(s)
    body = s[v:line_end]
    nxt = [m.start() - v for m in (_CONTENT_KEY.search(s, v, line_end), _LOCATION_KEY.search(s, v, line_end)) if m]
    if nxt:
        body = body[: min(nxt)]
    return unescape_model_string(body.strip().rstrip(",}").strip())

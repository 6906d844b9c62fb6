"""Backslashes in model-written strings, read the LaTeX-aware way (see `intrain.interventions.parse`,
**Backslashes / LaTeX**): JSON escapes collide with LaTeX (``\\frac`` is form feed + ``rac``), so we
decode them ourselves before any JSON parser sees the text."""

from __future__ import annotations

# LaTeX commands starting with "n" that must not be read as "\n" + letters.
# ("\ni" is deliberately absent: "\ni.e." is far more often newline + "i.e.".)
_LATEX_N = frozenset(
    [
        "ne",
        "neq",
        "neg",
        "nabla",
        "nu",
        "not",
        "notin",
        "nmid",
        "nleq",
        "ngeq",
        "nleqslant",
        "ngeqslant",
        "nless",
        "ngtr",
        "nsubseteq",
        "nsupseteq",
        "nsubset",
        "nsupset",
        "nparallel",
        "newline",
        "noindent",
        "nonumber",
        "nolimits",
        "natural",
        "nearrow",
        "nwarrow",
        "nexists",
        "nleftarrow",
        "nrightarrow",
        "nleftrightarrow",
        "nLeftarrow",
        "nRightarrow",
        "nLeftrightarrow",
        "ncong",
        "nsim",
        "nvdash",
        "nVdash",
        "nprec",
        "nsucc",
        "normalsize",
        "newcommand",
        "nobreak",
        "notag",
        "nolinebreak",
        "nexist",
        "nshortmid",
        "nsime",
    ]
)
_HEX = frozenset("0123456789abcdefABCDEF")


def _letters_from(s: str, i: int) -> str:
    j = i
    while j < len(s) and s[j].isascii() and s[j].isalpha():
        j += 1
    return s[i:j]


def _escape_at(s: str, i: int) -> tuple[str, int]:
    """Decode the backslash at ``s[i]``: (decoded text, characters consumed).

    A consumed length of 1 with decoded ``"\\\\"`` means "literal backslash";
    the following character is then processed normally.
    """
    if i + 1 >= len(s):
        return "\\", 1
    c = s[i + 1]
    if c == "\\":
        return "\\", 2
    if c in "\"'/":
        return c, 2
    if c == "u" and i + 6 <= len(s) and all(ch in _HEX for ch in s[i + 2 : i + 6]):
        return chr(int(s[i + 2 : i + 6], 16)), 6
    if c == "n":
        return ("\\", 1) if _letters_from(s, i + 1) in _LATEX_N else ("\n", 2)
    if c in "tr":
        if len(_letters_from(s, i + 1)) == 1:
            return ("\t" if c == "t" else "\r"), 2
        return "\\", 1
    return "\\", 1


def unescape_model_string(body: str) -> str:
    """Decode backslash escapes in a string body written by the model (LaTeX-aware)."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            dec, k = _escape_at(body, i)
            out.append(dec)
            i += k
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def fix_escapes(text: str, python: bool) -> str:
    """Rewrite every backslash sequence into an unambiguous JSON/Python escape.

    After this, ``json.loads`` (or ``ast.literal_eval`` when ``python``) decodes
    strings with exactly the semantics of :func:`unescape_model_string`.
    """
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        dec, k = _escape_at(text, i)
        if k == 6:  # \uXXXX, valid in both JSON and Python
            out.append(text[i : i + 6])
        elif dec == "\\":
            out.append("\\\\")
        elif dec == "\n":
            out.append("\\n")
        elif dec == "\t":
            out.append("\\t")
        elif dec == "\r":
            out.append("\\r")
        elif dec == '"':
            out.append('\\"')
        elif dec == "'":
            out.append("\\'" if python else "'")
        else:  # "/"
            out.append(dec)
        i += k
    return "".join(out)

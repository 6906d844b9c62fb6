r"""Leak filter: does an intervention state the gold answer? (paper §3.5)

Two modes (``propose.leak_mode``):

* ``normalised`` (ours, the default): :func:`leak_normal_form` on both sides, numbers
  matched on number boundaries. Catches LaTeX variants of the answer
  (``\dfrac{1}{2}`` for ``1/2``, ``1,000`` for ``1000``, ``B`` for ``b``) and does not
  fire on a number that merely contains the answer's digits (``10`` for gold ``1``).
* ``substring`` (the authors'): the raw gold string occurs in the raw content,
  case-sensitive -- ``answer in content`` in their ``parse_interventions.ipynb``.
  It drops more interventions with short numeric answers (gold ``1`` leaks in any
  text with a ``1`` in it, ``x_1`` included) and misses reformatted answers.

:func:`leak_normal_form` differs from ``grading.normalize_answer`` on purpose: it
serves substring search (leaks), not equality, so it keeps word boundaries and
rewrites fractions.
"""

from __future__ import annotations

import contextlib
import re

__all__ = ["LEAK_MODES", "leak_normal_form", "leaks_answer"]

LEAK_MODES = ("normalised", "substring")

_LATEX_TOKEN = re.compile(r"\\[a-z]+|\\[^a-z]", re.DOTALL)


def _brace_arg(s: str, i: int) -> tuple[str, int] | None:
    """Read one LaTeX argument at ``s[i]`` (balanced ``{...}`` or one token)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
        return None
    if s[i] == "\\":
        m = _LATEX_TOKEN.match(s, i)
        if m is not None:
            return m.group(0), m.end()
    return s[i], i + 1


def _frac_to_slash(s: str) -> str:
    r"""``\frac{a}{b}`` -> ``a/b`` (``(a+b)/2`` when an argument is compound)."""
    out: list[str] = []
    i = 0
    while True:
        k = s.find("\\frac", i)
        if k == -1:
            out.append(s[i:])
            break
        out.append(s[i:k])
        a = _brace_arg(s, k + 5)
        b = _brace_arg(s, a[1]) if a else None
        if a is None or b is None:
            out.append("\\frac")
            i = k + 5
            continue
        parts = []
        for arg in (a[0], b[0]):
            arg = _frac_to_slash(arg)
            simple = re.fullmatch(r"\s*-?[a-z0-9.\\]*\s*", arg) is not None
            parts.append(arg.strip() if simple else f"({arg.strip()})")
        out.append(f"{parts[0]}/{parts[1]}")
        i = b[1]
    return "".join(out)


_WRAPPER_CMDS = re.compile(
    r"\\(?:boxed|text|textbf|textit|textrm|mathrm|mathbf|operatorname|mbox|displaystyle"
    r"|left|right|bigl|bigr|big)(?![a-z])"
)


def leak_normal_form(text: str) -> str:
    r"""Normalisation shared by gold answers and intervention content for leak checks.

    Lowercase; ``\dfrac``/``\tfrac`` -> ``\frac``; ``\frac{a}{b}`` -> ``a/b``;
    drop ``$``, ``\boxed``, ``\text``-like wrappers, ``\left``/``\right``, spacing
    commands, braces; ``\%`` -> ``%``; thousands commas between digits removed;
    whitespace removed except a single space kept between two alphanumerics (so
    ``"2 4"`` does not become ``"24"``).
    """
    s = text.replace("\r\n", "\n").lower()
    s = re.sub(r"\\[dt]frac(?![a-z])", r"\\frac", s)
    s = s.replace("$", "")
    s = _WRAPPER_CMDS.sub("", s)
    s = re.sub(r"\\[,;:! ]", "", s)
    s = s.replace("\\%", "%")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", s)
    with contextlib.suppress(RecursionError):  # absurdly nested \frac: leave it unconverted
        s = _frac_to_slash(s)
    s = s.replace("{", "").replace("}", "")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    s = re.sub(r"(?<=[a-z0-9])\s+(?=[a-z0-9])", "\x00", s)
    s = re.sub(r"\s+", "", s)
    return s.replace("\x00", " ")


_NUMERIC_GOLD = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")
_WORD_GOLD = re.compile(r"[a-z0-9]+")


def leaks_answer(content: str, gold_answer: str, mode: str = "normalised") -> bool:
    r"""True when the gold answer occurs in the content, by ``mode`` (see the module doc).

    ``substring``: ``gold_answer in content`` on the raw strings, as the authors filter; an
    empty gold never leaks (theirs would drop every row; our loaders reject empty answers).

    ``normalised``: the normalised gold answer occurs in the normalised content.

    * Both sides go through :func:`leak_normal_form` (so ``\dfrac{1}{2}``,
      ``\frac12`` and ``1/2`` agree, ``$\boxed{42}$`` contains ``42``).
    * Numeric golds (``4``, ``-3``, ``2.5``, ``3/4``) use number boundaries: the
      match may not be preceded by a digit, ``.``, ``/``, ``_`` or ``^``, nor
      followed by a digit, ``/`` or a decimal ``.`` + digit.  So gold ``4`` does
      not match ``14``, ``4.5``, ``0.4``, ``x_4``, ``2^4`` or ``4/5``, but does match
      ``x = 4.`` and ``-4`` (a sign change is not worth the risk of a missed leak).
    * Other purely alphanumeric golds (``B``, ``yes``, ``e``) must not touch
      letters/digits on either side; anything else is a plain substring test.
    * An empty gold never leaks.  No numeric equivalence (``0.5`` vs ``1/2``).
    """
    if mode == "substring":
        return bool(gold_answer) and gold_answer in (content or "")
    if mode != "normalised":
        raise ValueError(f"leak mode must be one of {', '.join(LEAK_MODES)}, got {mode!r}")
    gold = leak_normal_form(gold_answer or "")
    if not gold:
        return False
    text = leak_normal_form(content or "")
    if _NUMERIC_GOLD.fullmatch(gold):
        pat = rf"(?<![0-9./_^]){re.escape(gold)}(?![0-9/])(?!\.[0-9])"
        return re.search(pat, text) is not None
    if _WORD_GOLD.fullmatch(gold):
        return re.search(rf"(?<![a-z0-9]){re.escape(gold)}(?![a-z0-9])", text) is not None
    return gold in text

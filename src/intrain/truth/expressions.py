r"""Exact arithmetic on free text: a safe expression evaluator and an equation finder.

Both read untrusted model text, so :func:`evaluate_expression` is a hand-written recursive-descent
parser over ``+ - * /`` and brackets (never ``eval``), and :func:`find_equations` only reports
``lhs = rhs`` pairs whose sides are purely numeric.  The arithmetic family's ground truth
(:mod:`intrain.truth.arithmetic`) is built on these two functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

__all__ = ["Equation", "evaluate_expression", "find_equations"]

# ---------------------------------------------------------------------------------------------
# Safe expression evaluation
# ---------------------------------------------------------------------------------------------

_MAX_EXPR_CHARS = 2000
_MAX_DEPTH = 64

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+|\\left|\\right|\\[,;:!\ ])
  | (?P<num>(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d+)?|\.\d+)
  | (?P<op>\\times|\\cdot|\\div|[+\-\u2212*/\u00d7\u00f7\u00b7\u22c5])
  | (?P<lp>[(\[])
  | (?P<rp>[)\]])
    """,
    re.VERBOSE,
)

_OP_NORMAL = {
    "+": "+",
    "-": "-",
    "\u2212": "-",  # unicode minus
    "*": "*",
    "\u00d7": "*",  # ×
    "\u00b7": "*",  # ·
    "\u22c5": "*",  # ⋅
    "\\times": "*",
    "\\cdot": "*",
    "/": "/",
    "\u00f7": "/",  # ÷
    "\\div": "/",
}


class _ParseError(Exception):
    pass


def _tokenize(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            raise _ParseError(f"unexpected character {expr[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group()
        if kind == "space":
            continue
        if kind == "num":
            tokens.append(("num", text.replace("{,}", "").replace(",", "")))
        elif kind == "op":
            tokens.append(("op", _OP_NORMAL[text]))
        else:
            tokens.append((kind, text))  # type: ignore[arg-type]
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary)* ;
    unary := ('+'|'-') unary | primary ; primary := NUMBER | '(' expr ')' | '[' expr ']'"""

    _CLOSE: ClassVar[dict[str, str]] = {"(": ")", "[": "]"}

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _ParseError("unexpected end")
        self.i += 1
        return tok

    def parse(self) -> Fraction:
        if not self.toks:
            raise _ParseError("empty")
        val = self.expr()
        if self.peek() is not None:
            raise _ParseError(f"trailing token {self.peek()}")
        return val

    def expr(self) -> Fraction:
        val = self.term()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            rhs = self.term()
            val = val + rhs if tok[1] == "+" else val - rhs
        return val

    def term(self) -> Fraction:
        val = self.unary()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "*/":
            self.take()
            rhs = self.unary()
            if tok[1] == "*":
                val = val * rhs
            else:
                if rhs == 0:
                    raise _ParseError("division by zero")
                val = val / rhs
        return val

    def unary(self) -> Fraction:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            self._enter()
            try:
                v = self.unary()
            finally:
                self.depth -= 1
            return -v if tok[1] == "-" else v
        return self.primary()

    def primary(self) -> Fraction:
        kind, text = self.take()
        if kind == "num":
            return Fraction(text)
        if kind == "lp":
            self._enter()
            try:
                v = self.expr()
            finally:
                self.depth -= 1
            closing = self.take()
            if closing[0] != "rp" or closing[1] != self._CLOSE[text]:
                raise _ParseError("unbalanced brackets")
            return v
        raise _ParseError(f"unexpected token {text!r}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _ParseError("nested too deeply")


def evaluate_expression(expr: str) -> Fraction | None:
    r"""Exact value of an arithmetic expression, or ``None`` if it is not one.

    Supports integers and decimals (``1,200`` and ``1{,}200`` thousands separators), ``+ - * /``,
    ``× ÷ · ⋅ −``, ``\times \cdot \div``, ``( )``/``[ ]`` (and ``\left( \right)``), unary
    ``+``/``-``, with the usual precedence.  Division by zero, letters, ``**``, implicit
    multiplication and anything else give ``None``.  A hand-written recursive-descent parser:
    nothing is ever passed to ``eval``.
    """
    if not isinstance(expr, str) or len(expr) > _MAX_EXPR_CHARS:
        return None
    try:
        return _Parser(_tokenize(expr)).parse()
    except (_ParseError, ValueError, ZeroDivisionError, RecursionError):
        return None


# ---------------------------------------------------------------------------------------------
# Finding equations in free text
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs`` found in a text; ``text[start:end]`` is ``"lhs = rhs"`` (lhs/rhs are
    slices of the original text, so they may contain ``\times`` etc.)."""

    lhs: str
    rhs: str
    start: int
    end: int


_NUM_PAT = (
    r"(?:(?<=\\times)|(?<=\\cdot)|(?<=\\div)|(?<![\w.,^{}\\]))"
    r"(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d+)?"
    r"(?![\w^!%]|\.\d|,\d|\{,\})"
)
_SP = r"[ \t]*"
_OP_PAT = r"(?:\\times|\\cdot|\\div|[+\-\u2212*/\u00d7\u00f7\u00b7\u22c5])"
_ATOM_PAT = rf"(?:[(\[\-\u2212]{_SP})*{_NUM_PAT}(?:{_SP}[)\]])*"
_EXPR_PAT = rf"{_ATOM_PAT}(?:{_SP}{_OP_PAT}{_SP}{_ATOM_PAT})*"
_CHAIN_RE = re.compile(rf"{_EXPR_PAT}(?:{_SP}={_SP}{_EXPR_PAT})+")
_MASK_RE = re.compile(r"\\[()\[\]]|\\left|\\right|\$")
_OP_CHARS = "+-\u2212*/\u00d7\u00f7\u00b7\u22c5^"
_DATE_RE = re.compile(r"^\d{1,4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,4}$")
_OPERATOR_WORDS = {"mod", "pmod", "bmod", "modulo", "plus", "minus", "times", "over"}
_LEADING_NUM_RE = re.compile(r"^(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d+)?")


def _mask(text: str) -> str:
    """Same-length copy with LaTeX math delimiters (``\\( \\) \\[ \\] $``, ``\\left``,
    ``\\right``) blanked so brackets of delimiters are not read as grouping."""
    return _MASK_RE.sub(lambda m: " " * len(m.group()), text)


def _trim_unbalanced(seg: str, start: int, first: bool, last: bool) -> tuple[str | None, int]:
    """Drop an unmatched leading '(' / '[' of the first segment and an unmatched trailing ')' /
    ']' of the last one (from "(12 + 7 = 19)").  A first segment with an unmatched closing
    bracket ("(1, 2) = 3") or a last one with an unmatched opening bracket extends beyond what
    we matched: return ``None``."""
    while seg:
        opens = seg.count("(") + seg.count("[")
        closes = seg.count(")") + seg.count("]")
        if opens > closes and first and seg[0] in "([":
            seg = seg[1:]
            stripped = seg.lstrip()
            start += 1 + len(seg) - len(stripped)
            seg = stripped
        elif closes > opens and last and seg[-1] in ")]":
            seg = seg[:-1].rstrip()
        elif opens != closes:
            return None, start
        else:
            break
    return seg, start


def _prev_nonspace(text: str, i: int) -> int:
    i -= 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i


def _next_nonspace(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def find_equations(text: str) -> list[Equation]:
    r"""Arithmetic equations in ``text``, in order.

    Recognised: ``"12 + 7 = 19"``, ``"12+7=19"``, ``"12 × 7 = 84"``, ``"12 \times 7 = 84"``,
    ``"\(12 + 7 = 19\)"``, thousands separators (``"1,200 + 300 = 1,500"``), decimals, unary minus,
    parentheses.  Both sides must be purely numeric expressions (see :func:`evaluate_expression`).

    Chains ``s0 = s1 = ... = sn`` give one equation per adjacent pair (``s_i = s_{i+1}``).
    Run-on continuations are understood: in ``"12 + 7 = 19 - 5 = 14"`` the segment ``19 - 5``
    starts with the value of the previous segment, so the pairs are ``12 + 7 = 19`` and
    ``19 - 5 = 14`` (both true).  The rule: when ``value(s_i) != value(s_{i+1})`` but
    ``s_{i+1}`` starts with a number equal to ``value(s_i)`` followed by an operator, the pair
    is ``s_i = that number``.  A run-on with a wrong value (``"12 + 7 = 20 - 5 = 15"``) yields
    the false pair ``12 + 7 = 20 - 5``.

    Ignored: numbers glued to letters/underscores/carets (``x_6``, ``2x``, ``x^2 = 4``), a side
    that continues with a non-numeric term (``x + 3 = 5``, ``12 + 7 = 19 + x``), percentages,
    factorials, dates (``2024-01-15``), tuples (``(1,2)``), and ``x`` as a multiplication sign.
    """
    if not text:
        return []
    masked = _mask(text)
    out: list[Equation] = []
    for m in _CHAIN_RE.finditer(masked):
        s, e = m.start(), m.end()
        # A first/last side that is really part of a larger non-numeric expression is dropped
        # (only the pairs not involving it survive): "x + 3 = 5", "12 + 7 = 19 + x", "T(3)=4",
        # "b^2 mod 9=0", "x -3 = 5", "2 x 3 = 6" ('x' as a times sign is not supported).
        left_bad = right_bad = False
        k = _prev_nonspace(masked, s)
        if k >= 0:
            prev = masked[k]
            word = re.search(r"([A-Za-z]+)$", masked[: k + 1])
            if (
                prev in _OP_CHARS
                or re.search(r"\\(?:times|cdot|div)$", masked[: k + 1])
                or (masked[s] in "-\u2212" and (prev.isalnum() or prev in ")]_"))
            ):
                left_bad = True
            elif masked[s] in "([" and k == s - 1 and (prev.isalnum() or prev in "_)]'"):
                left_bad = True  # function application f(3) = 4
            elif word and word.group(1).lower() in _OPERATOR_WORDS:
                left_bad = True
            elif prev in "xX" and (k == 0 or not masked[k - 1].isalpha()):
                j = _prev_nonspace(masked, k)
                if j >= 0 and (masked[j].isdigit() or masked[j] in ")]"):
                    left_bad = True
        n = _next_nonspace(masked, e)
        if (
            (n < len(masked) and (masked[n] in _OP_CHARS or masked[n] in "(["))
            or (n < len(masked) and masked.startswith(("\\times", "\\cdot", "\\div"), n))
            or re.match(r"[ \t]*(?:mod|pmod|bmod|modulo)\b", masked[e:])
        ):
            right_bad = True

        # Split the chain at '=' keeping offsets (trim on the masked text, slice the original).
        segs: list[tuple[str | None, int]] = []
        pos = s
        parts = masked[s:e].split("=")
        for idx, part in enumerate(parts):
            lead = len(part) - len(part.lstrip())
            seg_m, seg_start = _trim_unbalanced(part.strip(), pos + lead, idx == 0, idx == len(parts) - 1)
            seg_text = None if seg_m is None else text[seg_start : seg_start + len(seg_m)]
            segs.append((seg_text, seg_start))
            pos += len(part) + 1
        vals = [None if (not t or _DATE_RE.match(t)) else evaluate_expression(t) for t, _ in segs]
        if left_bad:
            vals[0] = None
        if right_bad:
            vals[-1] = None
        for i in range(len(segs) - 1):
            (lt, ls), (rt, rs) = segs[i], segs[i + 1]
            lv, rv = vals[i], vals[i + 1]
            if lv is None or rv is None or lt is None or rt is None:
                continue
            rhs, rend = rt, rs + len(rt)
            if lv != rv:
                lead_num = _LEADING_NUM_RE.match(rt)
                if lead_num and lead_num.end() < len(rt):
                    rest = rt[lead_num.end() :].lstrip()
                    if (rest[:1] in _OP_CHARS or rest.startswith(("\\times", "\\cdot", "\\div"))) and (
                        evaluate_expression(lead_num.group()) == lv
                    ):
                        rhs, rend = lead_num.group(), rs + lead_num.end()
            out.append(Equation(lhs=lt, rhs=rhs, start=ls, end=rend))
    return out

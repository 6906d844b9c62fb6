r"""The offline problem family of the embedded default: multi-step integer arithmetic.

Problems are short expressions ("Compute (12 + 7) * 3 - 43.") or word problems ("Mia has 12
apples. She buys 7 more. Then she gives away 5. How many apples does she have now?") built from a
chain of 2-3 operations (+, -, *) over small numbers.  Everything is deterministic by seed.

Reference solutions have one step per paragraph (paragraphs separated by ``"\n\n"``, the InT step
delimiter).  Each computation step contains exactly one plain-text equation ``"a op b = c"``;
the last paragraph is ``"The final answer is \boxed{N}."``.  Guarantees of the generator:

* all operands, intermediate results and the answer are non-negative integers (unless
  ``allow_negative``) and at most ``max_result``;
* the final answer differs from every number that appears earlier (operands and intermediate
  results), so a corrected *earlier* step never leaks the final answer;
* ids are ``f"{id_prefix}-{seed}-{i}"`` and problem texts within one call are distinct.

This module also holds the tools the scripted ("oracle") side of the pipeline needs:
:func:`find_equations`, a safe :func:`evaluate_expression` (a recursive-descent parser, never
``eval``), :func:`first_wrong_substep` and :func:`make_faulty_attempt`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

from .problem import Problem

__all__ = [
    "Equation",
    "evaluate_expression",
    "find_equations",
    "first_wrong_substep",
    "generate_arithmetic",
    "make_faulty_attempt",
]

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

    _CLOSE = {"(": ")", "[": "]"}

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
    ``×ּ ÷ · ⋅ −``, ``\times \cdot \div``, ``( )``/``[ ]`` (and ``\left( \right)``), unary
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
            if prev in _OP_CHARS or re.search(r"\\(?:times|cdot|div)$", masked[: k + 1]):
                left_bad = True
            elif masked[s] in "-\u2212" and (prev.isalnum() or prev in ")]_"):
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
        if n < len(masked) and (masked[n] in _OP_CHARS or masked[n] in "(["):
            right_bad = True
        elif n < len(masked) and masked.startswith(("\\times", "\\cdot", "\\div"), n):
            right_bad = True
        elif re.match(r"[ \t]*(?:mod|pmod|bmod|modulo)\b", masked[e:]):
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
        vals = [
            None if (not t or _DATE_RE.match(t)) else evaluate_expression(t) for t, _ in segs
        ]
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
                    if rest[:1] in _OP_CHARS or rest.startswith(("\\times", "\\cdot", "\\div")):
                        if evaluate_expression(lead_num.group()) == lv:
                            rhs, rend = lead_num.group(), rs + lead_num.end()
            out.append(Equation(lhs=lt, rhs=rhs, start=ls, end=rend))
    return out


def first_wrong_substep(substeps_texts: list[str]) -> int | None:
    """1-based index of the first substep containing an equation whose sides differ
    (exact rational comparison); ``None`` when every equation holds."""
    for idx, step in enumerate(substeps_texts, start=1):
        for eq in find_equations(step):
            lv, rv = evaluate_expression(eq.lhs), evaluate_expression(eq.rhs)
            if lv is not None and rv is not None and lv != rv:
                return idx
    return None


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

_SYM = {"+": "+", "-": "-", "*": "*"}
_VERB = {"+": "add", "-": "subtract", "*": "multiply"}

# (name, subject pronoun, object pronoun, possessive)
_PEOPLE = [
    ("Mia", "she", "her", "her"),
    ("Leo", "he", "him", "his"),
    ("Ava", "she", "her", "her"),
    ("Sam", "he", "him", "his"),
    ("Noah", "he", "him", "his"),
    ("Emma", "she", "her", "her"),
    ("Omar", "he", "him", "his"),
    ("Priya", "she", "her", "her"),
    ("Ken", "he", "him", "his"),
    ("Lucia", "she", "her", "her"),
    ("Ravi", "he", "him", "his"),
    ("Zoe", "she", "her", "her"),
]
# (items, container)
_ITEMS = [
    ("apples", "bags"),
    ("marbles", "jars"),
    ("stickers", "packs"),
    ("pencils", "boxes"),
    ("cookies", "boxes"),
    ("stamps", "sheets"),
    ("coins", "rolls"),
    ("shells", "buckets"),
    ("cards", "packs"),
    ("beads", "bags"),
]
# op -> list of (problem sentence, solution clause); fields: p (subject), o (object), b, items
_WORD_OPS = {
    "+": [
        ("{p} buys {b} more", "After buying {b} more, {p} has"),
        ("{p} finds {b} more", "After finding {b} more, {p} has"),
        ("a friend gives {o} {b} more", "After getting {b} more, {p} has"),
    ],
    "-": [
        ("{p} gives away {b}", "After giving away {b}, {p} has"),
        ("{p} loses {b}", "After losing {b}, {p} has"),
        ("{p} gives {b} to a friend", "After giving {b} to a friend, {p} has"),
    ],
    "*": [
        ("the number of {items} {p} has becomes {b} times as large", "Multiplying by {b}, {p} has"),
    ],
}
_MUL_WORDS = {2: ("doubles", "Doubling"), 3: ("triples", "Tripling")}
_EXPR_TEMPLATES = ["Compute {e}.", "What is {e}?", "Evaluate {e}.", "Calculate {e}."]
_EXPR_STEP_TEMPLATES = ["{c}, we {v}: {eq}.", "{c}, {eq}.", "{c} we {v}, which gives {eq}."]


@dataclass(frozen=True)
class _Step:
    op: str  # '+', '-', '*'
    a: int  # left operand as written
    b: int  # right operand as written
    c: int  # result
    carried_left: bool | None  # None for the first step; True if a is the previous result


def _eq(step_a: int, op: str, step_b: int, c: int, sym: str | None = None) -> str:
    return f"{step_a} {sym or _SYM[op]} {step_b} = {c}"


def _apply(op: str, x: int, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def _sample_chain(
    rng: random.Random,
    n_ops: int,
    max_operand: int,
    max_multiplier: int,
    max_result: int,
    allow_negative: bool,
    word: bool,
) -> tuple[int, list[_Step], bool] | None:
    """A chain of operations; returns (start, steps, bag_start) or None if this try failed.

    Results stay >= 2 in word problems ("1 pencils" reads badly) and >= 1 in expressions,
    unless ``allow_negative``."""
    lo = 2 if max_operand >= 3 else 1
    min_value = (2 if word else 1) if not allow_negative else -max_result
    start = rng.randint(lo, max_operand)
    steps: list[_Step] = []
    value = start
    bag_start = word and rng.random() < 0.3
    for k in range(n_ops):
        if k == 0 and bag_start:
            b = rng.randint(2, max_multiplier)
            c = start * b
            if c > max_result:
                return None
            steps.append(_Step("*", start, b, c, None))
            value = c
            continue
        feasible = []
        if value + 1 <= max_result:
            feasible.append("+")
        if value - 1 >= min_value:
            feasible.append("-")
        if value >= 2 and value * 2 <= max_result:
            feasible.append("*")
        if not feasible:
            return None
        op = rng.choice(feasible)
        left = True  # carried value on the left
        if op == "+":
            b = rng.randint(lo, max(lo, min(max_operand, max_result - value)))
            if not word and rng.random() < 0.25:
                left = False
        elif op == "-":
            b = rng.randint(1, max(1, min(max_operand, value - min_value)))
            if not word and not allow_negative and value + 1 <= max_operand and rng.random() < 0.2:
                b = rng.randint(value + 1, max_operand)  # b - (expr)
                left = False
        else:
            b = rng.randint(2, max(2, min(max_multiplier, max_result // value)))
            if not word and rng.random() < 0.25:
                left = False
        a_w, b_w = (value, b) if left else (b, value)
        c = _apply(op, a_w, b_w)
        if c > max_result or c < min_value:
            return None
        steps.append(_Step(op, a_w, b_w, c, left if k > 0 else None))
        value = c
    return start, steps, bag_start


def _render_expression(start: int, steps: list[_Step]) -> str:
    expr, top = str(start), None
    for k, st in enumerate(steps):
        sym = _SYM[st.op]
        if k == 0:  # both operands are literals, as written (start may be either of them)
            expr = f"{st.a} {sym} {st.b}"
        elif st.carried_left is False:
            inner = f"({expr})" if top is not None and not (st.op in "+-" and top == "*") else expr
            expr = f"{st.a} {sym} {inner}"
        else:
            inner = f"({expr})" if st.op == "*" and top in ("+", "-") else expr
            expr = f"{inner} {sym} {st.b}"
        top = st.op
    return expr


def _connector(k: int, n: int) -> str:
    if k == 0:
        return "First"
    if k == n - 1:
        return "Finally" if n > 2 else "Then"
    return "Next"


def _expression_problem(rng: random.Random, start: int, steps: list[_Step]) -> tuple[str, list[str]]:
    text = rng.choice(_EXPR_TEMPLATES).format(e=_render_expression(start, steps))
    tmpl = rng.choice(_EXPR_STEP_TEMPLATES)
    paras = [
        tmpl.format(c=_connector(k, len(steps)), v=_VERB[st.op], eq=_eq(st.a, st.op, st.b, st.c))
        for k, st in enumerate(steps)
    ]
    return text, paras


def _word_problem(
    rng: random.Random, start: int, steps: list[_Step], bag_start: bool
) -> tuple[str, list[str]]:
    name, p, o, poss = rng.choice(_PEOPLE)
    items, container = rng.choice(_ITEMS)
    sentences: list[str] = []
    paras: list[str] = []
    for k, st in enumerate(steps):
        eq = _eq(st.a, st.op, st.b, st.c)
        if k == 0 and bag_start:
            sentences.append(f"{name} gets {st.a} {container} with {st.b} {items} in each.")
            paras.append(f"{name} gets {st.a} {container} of {st.b} {items}, so {p} has {eq} {items}.")
            continue
        if st.op == "*" and st.b in _MUL_WORDS and rng.random() < 0.6:
            verb, ger = _MUL_WORDS[st.b]
            sent = f"the number of {items} {p} has {verb}"
            clause = f"{ger} that, {p} has"
        else:
            sent_t, clause_t = rng.choice(_WORD_OPS[st.op])
            sent = sent_t.format(p=p, o=o, b=st.b, items=items)
            clause = clause_t.format(p=p, b=st.b)
        if k == 0:
            sentences.append(f"{name} has {start} {items}.")
        prefix = "" if k == 0 else "Then "
        sentence = prefix + sent
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        para = f"{clause} {eq} {items}."
        if k == 0:
            para = f"{name} starts with {start} {items}. {para}"
        paras.append(para)
    sentences.append(f"How many {items} does {name if rng.random() < 0.5 else p} have now?")
    return " ".join(sentences), paras


def _numbers_ok(start: int, steps: list[_Step]) -> bool:
    answer = steps[-1].c
    earlier = {start}
    for st in steps:
        earlier.update((st.a, st.b))
    earlier.update(st.c for st in steps[:-1])
    return answer not in earlier


def generate_arithmetic(
    n: int,
    seed: int,
    steps: tuple[int, int] = (2, 3),
    max_operand: int = 20,
    id_prefix: str = "arith",
    *,
    max_result: int = 1000,
    max_multiplier: int | None = None,
    word_fraction: float = 0.5,
    allow_negative: bool = False,
) -> list[Problem]:
    r"""``n`` distinct multi-step arithmetic problems, deterministic by ``seed``.

    ``steps`` is the (min, max) number of operations; operands are at most ``max_operand``
    (multipliers at most ``max_multiplier``, default ``min(max_operand, 10)``); every value is
    at most ``max_result``.
    About ``word_fraction`` of the problems are word problems, the rest expressions.

    Measured difficulty (SmolLM2-135M-Instruct, CPU, 16 problems x 4 samples, T=0.7, 160 new
    tokens, graded on the last ``\boxed{}``): pass@1 = 0 both for the defaults and for
    ``steps=(2, 2), max_operand=5``.  The model almost never puts an integer in ``\boxed{}``
    (0 of 128 samples did).  With the last number in the text taken as its answer, pass@1 was
    0.016 for the defaults and 0.078 for the easy setting.
    """
    lo, hi = steps
    if n < 0:
        raise ValueError("n must be >= 0")
    if not (1 <= lo <= hi):
        raise ValueError(f"steps must satisfy 1 <= min <= max, got {steps}")
    if max_operand < 2:
        raise ValueError("max_operand must be >= 2")
    if max_result < max(2 * max_operand, 4):
        raise ValueError("max_result must be >= 2 * max_operand")
    mul_max = max(2, min(max_operand, 10) if max_multiplier is None else max_multiplier)
    rng = random.Random(seed)
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * (n + 10):
            raise ValueError(
                f"could not generate {n} distinct problems with steps={steps}, "
                f"max_operand={max_operand}, max_result={max_result}"
            )
        n_ops = rng.randint(lo, hi)
        word = rng.random() < word_fraction
        chain = _sample_chain(rng, n_ops, max_operand, mul_max, max_result, allow_negative, word)
        if chain is None:
            continue
        start, chain_steps, bag_start = chain
        if not _numbers_ok(start, chain_steps):
            continue
        if word:
            text, paras = _word_problem(rng, start, chain_steps, bag_start)
        else:
            text, paras = _expression_problem(rng, start, chain_steps)
        if text in seen:
            continue
        seen.add(text)
        answer = chain_steps[-1].c
        paras.append(f"The final answer is \\boxed{{{answer}}}.")
        out.append(
            Problem(
                id=f"{id_prefix}-{seed}-{len(out)}",
                problem=text,
                answer=str(answer),
                reference_solution="\n\n".join(paras),
                source="arithmetic",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Faulty attempts (for the scripted pipeline and tests)
# ---------------------------------------------------------------------------------------------

_SIMPLE_EQ_RE = re.compile(r"^\s*(-?\d+)\s*([+\-*\u00d7])\s*(-?\d+)\s*$")
_INTROS = [
    "Let's solve this step by step.",
    "I'll work through the operations one at a time.",
    "Let me compute this carefully.",
    "We go through it step by step.",
]
_FINALS = [
    "The final answer is \\boxed{{{a}}}.",
    "So the answer is \\boxed{{{a}}}.",
    "Therefore, the final answer is \\boxed{{{a}}}.",
]
_CONNECTOR_SWAPS = {
    "First": ["First", "To start", "Firstly"],
    "Next": ["Next", "Then", "After that"],
    "Then": ["Then", "Next", "After that"],
    "Finally": ["Finally", "Lastly", "Last"],
}
_AFTER_PREFIXES = ["", "", "So ", "Now, ", "Then, "]
_METHODS = {
    "+": ["by adding {b} to {a} in two parts", "by adding the tens and the ones separately", "by counting up {b} from {a}"],
    "-": ["by counting down {b} from {a}", "by subtracting the tens and the ones separately"],
    "*": ["by multiplying the tens and the ones separately and adding the parts", "by adding up {b} copies of {a}"],
}
_INTERVENTION_LEADS = ["", "", "Let me redo this step carefully. ", "Wait, I should recompute this. "]


@dataclass
class _ParsedStep:
    para: int  # paragraph index in the reference
    op: str
    a: int
    b: int
    c: int
    carried_left: bool | None
    eq_start: int
    eq_end: int


def _parse_reference(problem: Problem) -> tuple[list[str], list[_ParsedStep]]:
    paras = problem.reference_solution.split("\n\n")
    parsed: list[_ParsedStep] = []
    prev: int | None = None
    for i, para in enumerate(paras):
        eqs = find_equations(para)
        if not eqs:
            continue
        if len(eqs) != 1:
            raise ValueError(f"{problem.id}: reference paragraph {i + 1} has {len(eqs)} equations, expected 1")
        eq = eqs[0]
        m = _SIMPLE_EQ_RE.match(eq.lhs)
        if m is None or not re.fullmatch(r"\s*-?\d+\s*", eq.rhs):
            raise ValueError(f"{problem.id}: paragraph {i + 1}: not an 'a op b = c' equation: {eq.lhs} = {eq.rhs}")
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(eq.rhs)
        op = "*" if op == "\u00d7" else op
        if _apply(op, a, b) != c:
            raise ValueError(f"{problem.id}: reference paragraph {i + 1} has a false equation")
        if prev is None:
            carried = None
        elif a == prev:
            carried = True
        elif b == prev:
            carried = False
        else:
            raise ValueError(f"{problem.id}: paragraph {i + 1} does not use the previous result {prev}")
        parsed.append(_ParsedStep(i, op, a, b, c, carried, eq.start, eq.end))
        prev = c
    if not parsed:
        raise ValueError(f"{problem.id}: reference solution has no equations")
    if str(parsed[-1].c) != problem.answer.strip():
        raise ValueError(f"{problem.id}: last equation result {parsed[-1].c} != answer {problem.answer}")
    return paras, parsed


def _slips(st: _ParsedStep, a: int, b: int) -> list[int]:
    c = _apply(st.op, a, b)
    cands = [c + 1, c - 1, c + 10, c - 10]
    s = str(c)
    if len(s) >= 2 and s[-1] != s[-2]:
        swapped = s[:-2] + s[-1] + s[-2]
        if not swapped.startswith("0"):
            cands.append(int(swapped))
    for other in ("+", "-", "*"):
        if other != st.op:
            cands.append(_apply(other, a, b))
    return [w for w in dict.fromkeys(cands) if w != c]


def _contains_number(text: str, number: str) -> bool:
    return re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text) is not None


def _pick_connector(para: str, rng: random.Random) -> tuple[str, str] | None:
    """Choose a rephrasing of the paragraph's opening word: (old prefix, new prefix)."""
    for word, options in _CONNECTOR_SWAPS.items():
        if para.startswith(word + " ") or para.startswith(word + ","):
            return word, rng.choice(options)
    if para.startswith("After "):
        pre = rng.choice(_AFTER_PREFIXES)
        return ("After ", pre + "after ") if pre else None
    return None


def _apply_connector(para: str, swap: tuple[str, str] | None) -> str:
    if swap is None or not para.startswith(swap[0]):
        return para
    return swap[1] + para[len(swap[0]) :]


def make_faulty_attempt(problem: Problem, rng: random.Random) -> tuple[str, int, str]:
    r"""A plausible wrong attempt at an arithmetic-family ``problem``.

    Returns ``(attempt_text, location, intervention)``:

    * ``attempt_text`` follows the reference's paragraph format (steps separated by ``"\n\n"``,
      sometimes with an intro paragraph and varied connectors / ``×`` signs); exactly one step's
      result is wrong by a plausible slip (±1, ±10, swapped last digits, or the result of the
      wrong operation), later steps carry the wrong value consistently, and it ends with a wrong
      ``\boxed{}`` answer;
    * ``location`` is the 1-based index of the wrong step among ``attempt_text.split("\n\n")``
      (what :func:`first_wrong_substep` returns on it);
    * ``intervention`` is a corrected replacement for that step in the student's voice.  It never
      contains the final answer: for an earlier step it is the corrected step (its result is an
      intermediate value); for the final computation it only names the method, e.g.
      ``"Let me recompute 19 - 5 carefully by counting down 5 from 19."``.

    Raises ``ValueError`` if the reference is not in the arithmetic family's format.
    """
    paras, steps = _parse_reference(problem)
    correct_final = steps[-1].c
    allow_neg = any(v < 0 for st in steps for v in (st.a, st.b, st.c))
    sym = "\u00d7" if rng.random() < 0.3 else "*"

    for _ in range(100):
        j = rng.randrange(len(steps))
        st = steps[j]
        slips = _slips(st, st.a, st.b)
        rng.shuffle(slips)
        chosen: list[tuple[int, int, int]] | None = None
        for w in slips:
            if w < 0 and not allow_neg:
                continue
            vals = [(s.a, s.b, s.c) for s in steps]
            vals[j] = (st.a, st.b, w)
            cur, ok = w, True
            for k in range(j + 1, len(steps)):
                sk = steps[k]
                a, b = (cur, sk.b) if sk.carried_left else (sk.a, cur)
                cur = _apply(sk.op, a, b)
                if cur < 0 and not allow_neg:
                    ok = False
                    break
                vals[k] = (a, b, cur)
            if ok and cur != correct_final:
                chosen = vals
                break
        if chosen is not None:
            break
    else:  # pragma: no cover - every step has several valid slips
        raise ValueError(f"{problem.id}: could not build a faulty attempt")

    out_paras = list(paras)
    for k, sk in enumerate(steps):
        a, b, c = chosen[k]
        p = out_paras[sk.para]
        out_paras[sk.para] = p[: sk.eq_start] + _eq(a, sk.op, b, c, sym if sk.op == "*" else None) + p[sk.eq_end :]
    swaps = {i: _pick_connector(p, rng) for i, p in enumerate(out_paras)}
    body = [_apply_connector(p, swaps[i]) for i, p in enumerate(out_paras)]
    # The corrected version of the wrong step, phrased like the attempt's step.
    st = steps[j]
    wrong_para_idx = st.para
    correct_para = paras[st.para]
    correct_para = (
        correct_para[: st.eq_start]
        + _eq(st.a, st.op, st.b, st.c, sym if st.op == "*" else None)
        + correct_para[st.eq_end :]
    )
    correct_para = _apply_connector(correct_para, swaps[wrong_para_idx])

    final_idx = len(paras) - 1
    if "\\boxed" in paras[final_idx]:
        body[final_idx] = rng.choice(_FINALS).format(a=chosen[-1][2])
    else:  # pragma: no cover - generated references always end with the boxed line
        body.append(rng.choice(_FINALS).format(a=chosen[-1][2]))
    offset = 0
    if rng.random() < 0.5:
        body.insert(0, rng.choice(_INTROS))
        offset = 1
    location = wrong_para_idx + 1 + offset

    answer = problem.answer.strip()
    if j < len(steps) - 1:
        intervention = rng.choice(_INTERVENTION_LEADS) + correct_para
    else:
        intervention = ""
    if not intervention or _contains_number(intervention, answer):
        sym_st = sym if st.op == "*" else _SYM[st.op]
        method = rng.choice(_METHODS[st.op]).format(a=st.a, b=st.b)
        intervention = f"Let me recompute {st.a} {sym_st} {st.b} carefully {method}."
        if _contains_number(intervention, answer):
            intervention = "Let me recompute this last operation carefully, one digit at a time."
    return "\n\n".join(body), location, intervention

"""Safe evaluation of arithmetic in free text, and finding its equations."""

from __future__ import annotations

from fractions import Fraction

import pytest

from intrain.truth.expressions import Equation, evaluate_expression, find_equations

# --------------------------------------------------------------------------- equations in text


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(e.lhs, e.rhs) for e in find_equations(text)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("12 + 7 = 19", [("12 + 7", "19")]),
        ("12+7=19", [("12+7", "19")]),
        ("12 × 7 = 84", [("12 × 7", "84")]),
        ("12 \\times 7 = 84", [("12 \\times 7", "84")]),
        ("19 - 5 = 14", [("19 - 5", "14")]),
        ("12 + 7 - 5 = 14", [("12 + 7 - 5", "14")]),
        ("so 12 + 7 = 19 - 5 = 14.", [("12 + 7", "19"), ("19 - 5", "14")]),
        ("12 + 7 = 20 - 5 = 15", [("12 + 7", "20 - 5"), ("20 - 5", "15")]),
        ("we get \\(12 + 7 = 19\\) apples", [("12 + 7", "19")]),
        ("\\[ 3 \\times (4 + 5) = 27 \\]", [("3 \\times (4 + 5)", "27")]),
        ("$12+7=19$", [("12+7", "19")]),
        ("1,200 + 300 = 1,500", [("1,200 + 300", "1,500")]),
        ("(12 + 7 = 19)", [("12 + 7", "19")]),
        ("10 / 4 = 2.5", [("10 / 4", "2.5")]),
        ("a = 3 + 4 = 7", [("3 + 4", "7")]),
        ("P(4)=1+14+36+24=75", [("1+14+36+24", "75")]),
        ("x_6+y_6+z_6=70+99+70=239", [("70+99+70", "239")]),
        ("It happened on 2024-01-15 at 10:30.", []),
        ("2024-01-15 = 2008", []),
        ("x + 3 = 5", []),
        ("x - 3 = 5", []),
        ("x^2 = 4", []),
        ("2x + 3 = 7", []),
        ("12 + 7 = 19 + x", []),
        ("T(3)=4, T(4)=10", []),
        ("f(1,2) = 3", []),
        ("(1, 2) = 3", []),
        ("b^2 mod 9=0", []),
        ("2^3 = 8 = 1 (mod 7)", []),
        ("50% = 0.5", []),
        ("5! = 120", []),
        ("2 x 3 = 6", []),
        ("no numbers here", []),
    ],
)
def test_find_equations(text: str, expected: list[tuple[str, str]]) -> None:
    assert _pairs(text) == expected


def test_equation_spans() -> None:
    text = "First, 12 + 7 = 19. Then 19 × 3 = 57."
    eqs = find_equations(text)
    assert [text[e.start : e.end] for e in eqs] == ["12 + 7 = 19", "19 × 3 = 57"]
    assert eqs[0] == Equation("12 + 7", "19", 7, 18)
    t2 = "so 12 + 7 = 19 - 5 = 14"
    assert [t2[e.start : e.end] for e in find_equations(t2)] == ["12 + 7 = 19", "19 - 5 = 14"]


# --------------------------------------------------------------------------- safe evaluation


@pytest.mark.parametrize(
    "expr,value",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 * 3 + 4 * 5", 26),
        ("10 - 4 - 3", 3),
        ("100 / 10 / 5", 2),
        ("2 * (3 + 4) * 5", 70),
        ("((2))", 2),
        ("12 × 7", 84),
        ("84 ÷ 7", 12),
        ("12 \\times 7", 84),
        ("3 \\cdot 4", 12),
        ("3 · 4", 12),
        ("8 \\div 2", 4),
        ("7 − 2", 5),
        ("-3 + 5", 2),
        ("-(2 + 3)", -5),
        ("--4", 4),
        ("2 * -3", -6),
        ("1.5 + 2.25", Fraction(15, 4)),
        ("1,200 + 300", 1500),
        ("1{,}200 - 200", 1000),
        ("[2 + 3] * 2", 10),
        ("\\left(1 + 2\\right) \\times 3", 9),
        ("7 / 2", Fraction(7, 2)),
    ],
)
def test_evaluate_expression(expr: str, value: Fraction | int) -> None:
    assert evaluate_expression(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "1 / 0",
        "5 ÷ (3 - 3)",
        "__import__('os')",
        "__import__('os').system('echo hi')",
        "os.system('ls')",
        "1 + x",
        "2 ** 3",
        "2(3)",
        "(1 + 2",
        "1 + 2)",
        "(1 + 2]",
        "1e5",
        "",
        "   ",
        "+",
        "3 +",
        "1,2",
        "lambda: 1",
        "open('/etc/passwd').read()",
        "(" * 500 + "1" + ")" * 500,
        "1" + "+1" * 5000,
    ],
)
def test_evaluate_expression_rejects(expr: str) -> None:
    assert evaluate_expression(expr) is None


def test_evaluate_expression_non_string() -> None:
    assert evaluate_expression(None) is None  # type: ignore[arg-type]

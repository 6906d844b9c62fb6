"""Grading: boxed extraction, the worker pool, and a table of verdicts checked against math-verify 0.9.0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from intrain.grading import Grader, Verdict, extract_boxed, normalize_answer
from intrain.grading.answers import _distinct_integers
from intrain.grading.worker import _compare


def boxed(answer: str) -> str:
    return f"Putting it together, the final answer is $\\boxed{{{answer}}}$."


# (gold, completion, expected reason). Every row was checked against math-verify 0.9.0 and is
# what a careful human grader would say too.
CORPUS: list[tuple[str, str, str]] = [
    # fractions and decimals
    (r"\frac{1}{2}", boxed("0.5"), "correct"),
    ("0.5", boxed(r"\frac{1}{2}"), "correct"),
    ("0.75", boxed(r"\dfrac{3}{4}"), "correct"),
    (r"\frac12", boxed(r"\tfrac{1}{2}"), "correct"),
    (r"\frac{1}{3}", boxed("0.333333"), "correct"),
    (r"\frac{1}{3}", boxed("0.333"), "wrong"),  # 6 significant digits are required
    (r"-\frac{3}{4}", boxed("-0.75"), "correct"),
    (r"-\frac{3}{4}", boxed(r"\frac{-3}{4}"), "correct"),
    ("0.1", boxed(r"\frac{1}{10}"), "correct"),
    ("18.90", boxed("18.9"), "correct"),
    ("5", boxed("5.0"), "correct"),
    ("5", boxed("5."), "correct"),  # sentence period inside the box
    # percentages
    (r"50\%", boxed("0.5"), "correct"),
    ("0.5", boxed(r"50\%"), "correct"),
    (r"20\%", boxed(r"25\%"), "wrong"),
    # intervals and sets
    ("(1,2]", boxed("(1,2]"), "correct"),
    ("(1,2]", boxed("(1,2)"), "wrong"),
    ("[2, 5)", boxed("[2,5)"), "correct"),
    (r"(-\infty, 3)", boxed(r"(-\infty,3)"), "correct"),
    (r"(-\infty, 1) \cup (2, \infty)", boxed(r"(-\infty,1)\cup(2,\infty)"), "correct"),
    (r"x \in [1,3]", boxed("[1,3]"), "correct"),
    (r"1 < x \le 2", boxed("(1,2]"), "correct"),  # inequality gold accepts the interval
    (r"\{1,2,3\}", boxed(r"\{3,2,1\}"), "correct"),
    (r"\{1,2,3\}", boxed("1,2,3"), "correct"),
    (r"\{1,2,3\}", boxed(r"\{1,2\}"), "wrong"),
    ("3,4", boxed(r"3 \text{ and } 4"), "correct"),
    # equations
    ("2", boxed("x=2"), "correct"),
    ("x=2", boxed("2"), "correct"),
    ("x=2", boxed("y=2"), "wrong"),
    ("y=2x+1", boxed("y=1+2x"), "correct"),
    ("x^2+2x+1", boxed("(x+1)^2"), "correct"),
    # units, currency, degrees, thousands separators
    ("5", boxed(r"5\text{ cm}"), "correct"),
    (r"5\text{ cm}", boxed("5"), "correct"),
    (r"4\text{ cm}^2", boxed("4"), "correct"),
    ("10", boxed(r"10\text{ inches}"), "correct"),
    (r"90^\circ", boxed("90"), "correct"),
    ("5", boxed(r"\$5"), "correct"),
    (r"\$18.90", boxed("18.90"), "correct"),
    ("1000", boxed("1,000"), "correct"),
    ("1000", boxed(r"1\,000"), "correct"),  # math-verify alone reads this as 1*000 = 0
    ("1000", boxed("1{,}000"), "correct"),
    # text answers
    ("No such values", boxed(r"\text{No such values}"), "correct"),
    ("No such values", boxed(r"\text{no such values.}"), "correct"),
    ("Tuesday", boxed(r"\text{Tuesday}"), "correct"),
    ("Tuesday", boxed("Tuesday"), "correct"),
    (r"\text{Tuesday}", boxed("tuesday"), "correct"),
    ("Tennessee", boxed(r"\textbf{Tennessee}"), "correct"),
    ("Tuesday", boxed(r"\text{Monday}"), "wrong"),
    ("Tuesday", boxed("Tudesay"), "wrong"),  # math-verify alone: anagrams compare equal
    ("listen", boxed("silent"), "wrong"),
    ("No such values", boxed("such no values"), "wrong"),
    (r"\text{yes}", boxed("Yes"), "correct"),
    (r"\text{even}", boxed(r"\text{odd}"), "wrong"),
    (r"\text{(C)}", boxed("C"), "correct"),
    ("B", boxed(r"\textbf{(A)}"), "wrong"),
    # roots, pi, nested braces
    (r"\frac{\sqrt{2}}{2}", boxed(r"\frac{\sqrt{2}}{2}"), "correct"),
    (r"\frac{\sqrt{2}}{2}", boxed(r"\frac{1}{\sqrt{2}}"), "correct"),
    (r"\frac{\sqrt{2}}{2}", boxed(r"\sqrt{2}/2"), "correct"),
    (r"\frac{\sqrt{2}}{2}", boxed(r"\frac{\sqrt{3}}{2}"), "wrong"),
    (r"\sqrt{2}", boxed(r"\sqrt2"), "correct"),
    (r"2\sqrt{3}", boxed(r"\sqrt{12}"), "correct"),
    (r"3\sqrt{2}", boxed("4.242641"), "correct"),
    (r"3\sqrt{2}", boxed("4.2426"), "wrong"),
    (r"\pi", boxed(r"\pi"), "correct"),
    (r"2\pi", boxed("6.283185"), "correct"),
    (r"\pi", boxed("3.14"), "wrong"),
    (r"\frac{\pi}{2}", boxed(r"\pi/2"), "correct"),
    # negatives and large integers
    ("-3", boxed("-3"), "correct"),
    ("-3", boxed("3"), "wrong"),
    ("-5", boxed("- 5"), "correct"),
    ("123456789012345678901234567890", boxed("123456789012345678901234567890"), "correct"),
    ("123456789012345678901234567890", boxed("123456789012345678901234567891"), "wrong"),
    ("2^{100}", boxed("1267650600228229401496703205376"), "correct"),
    # tuples, matrices, complex numbers
    ("(1,2,3)", boxed("(1,2,3)"), "correct"),
    ("(1,2,3)", boxed("(1,3,2)"), "wrong"),
    ("(2,3)", boxed("(2, 3)"), "correct"),
    ("(2,3)", boxed("(3, 2)"), "wrong"),
    ("(3,4)", boxed(r"\left(3,4\right)"), "correct"),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", boxed(r"\begin{pmatrix}1\\2\end{pmatrix}"), "correct"),
    ("3+2i", boxed("2+3i"), "wrong"),
    # misc symbols
    (r"\emptyset", boxed(r"\varnothing"), "correct"),
    (r"\infty", boxed(r"\infty"), "correct"),
    (r"\frac{a}{b}", boxed("a/b"), "correct"),
    ("2xy", boxed("2yx"), "correct"),
    # box handling: last box wins, \fbox, space form, golds given in LaTeX wrappers
    ("7", r"First \boxed{3}, then finally \boxed{7}", "correct"),
    ("3", r"First \boxed{3}, then finally \boxed{7}", "wrong"),
    ("7", r"so \fbox{7}", "correct"),
    ("7", r"so $\boxed 7$", "correct"),
    (r"\boxed{12}", boxed("12"), "correct"),
    (r"$\frac{1}{2}$", boxed("1/2"), "correct"),
    ("4", r"The answer is \boxed{3}", "wrong"),
    # no answer / unparseable
    ("7", "The answer is 7.", "no_answer"),
    ("7", r"The answer is \boxed{\frac{1}{2}", "no_answer"),  # unbalanced: truncated generation
    ("7", r"The answer is \boxed{}", "no_answer"),
    ("5", boxed("???"), "parse_error"),
    (r"\frac{1}{2}", boxed(r"\frac{1}{}"), "parse_error"),
    ("???", boxed("5"), "parse_error"),
]

# math-verify 0.9.0 (or this module's text rule) gets these wrong. They are pinned so that a
# fix, or a new regression, shows up; the reward is wrong for them in training.
# (gold, completion, reason returned, what a human would say and why it differs)
KNOWN_LIMITATIONS: list[tuple[str, str, str, str]] = [
    (
        r"\frac{1}{2004!}",
        boxed(r"\frac{1}{2006!}"),
        "correct",
        "false positive: both round to 0 at math-verify's float_rounding=6",
    ),
    ("10", boxed(r"10\%"), "correct", "false positive: a percent sign is accepted for its number"),
    (r"10\%", boxed("10"), "correct", "lenient by design: 10% and 10 are both accepted"),
    (
        "(1,2]",
        boxed(r"1 < x \le 2"),
        "wrong",
        "false negative: verify is asymmetric, an inequality prediction does not match an interval gold",
    ),
    (
        "xyz",
        boxed("zyx"),
        "wrong",
        "false negative: three or more bare letters count as a word answer and compare as strings",
    ),
    (r"\sin x", boxed("sin(x)"), "wrong", "false negative: bare 'sin' is not LaTeX, parsed as s*i*n"),
    ("5", boxed("5 dollars"), "wrong", "false negative: 'dollars' is not in math-verify's unit list"),
    (
        r"\alpha\beta\gamma",
        boxed(r"\gamma\beta\alpha"),
        "wrong",
        r"false negative: \gamma parses as EulerGamma or as the gamma function depending on position",
    ),
]


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2, timeout_s=10.0) as pool:
        yield pool


@pytest.fixture(scope="module")
def table_verdicts(grader: Grader) -> list[Verdict]:
    rows = CORPUS + [(gold, text, reason) for gold, text, reason, _ in KNOWN_LIMITATIONS]
    # One call for the whole table: the two workers share it, which keeps the suite fast.
    return grader.grade([text for _, text, _ in rows], [gold for gold, _, _ in rows])


def test_corpus_size():
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[f"{g}|{t[-30:]}" for g, t, _ in CORPUS])
def test_corpus_verdict(table_verdicts: list[Verdict], index: int):
    gold, text, expected = CORPUS[index]
    verdict = table_verdicts[index]
    assert verdict.reason == expected, (gold, text, verdict)
    assert verdict.correct == (expected == "correct")
    assert verdict.extracted == extract_boxed(text)


@pytest.mark.parametrize(
    "index", range(len(KNOWN_LIMITATIONS)), ids=[why.split(":")[0] for *_, why in KNOWN_LIMITATIONS]
)
def test_known_limitation_is_unchanged(table_verdicts: list[Verdict], index: int):
    _gold, _text, reason, why = KNOWN_LIMITATIONS[index]
    assert table_verdicts[len(CORPUS) + index].reason == reason, why


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"\boxed{5}", "5"),
        (r"\boxed{ 5 }", "5"),
        (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{\sqrt{2}}{2}"),
        (r"\boxed{1} and later \boxed{2}", "2"),
        (r"\fbox{x+1}", "x+1"),
        (r"so $\boxed 7$ done", "7"),
        (r"\boxed 42. Done", "42."),
        (r"\boxed {3}", "3"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{\left\{ x \right.}", r"\left\{ x \right."),  # escaped braces are not counted
        (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
        (r"\boxed{\text{Tuesday}}", r"\text{Tuesday}"),
        (r"\boxed{\boxed{9}}", "9"),
        ("no box here", None),
        ("", None),
        (r"\boxed{\frac{1}{2}", None),  # unbalanced
        (r"\boxed{1} then \boxed{2", None),  # the last box is truncated: no final answer
        (r"\boxed{}", None),
        (r"\boxed{   }", None),
        (r"\boxed", None),
        (r"\boxed$", None),
        (r"\boxedanswer{3}", None),  # a different command
    ],
)
def test_extract_boxed(text: str, expected: str | None):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"$\boxed{\text{No such values.}}$", "nosuchvalues"),
        (r"\text{Tuesday}", "tuesday"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"1\,000\!", "1000"),
        ("  X = 5.  ", "x=5"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\rightarrow", r"\rightarrow"),
    ],
)
def test_normalize_answer(text: str, expected: str):
    assert normalize_answer(text) == expected


def test_no_answer_and_string_matches_need_no_worker():
    with Grader(workers=1) as pool:
        verdicts = pool.grade(
            ["nothing boxed", r"\boxed{", boxed(r"\text{Tuesday}"), boxed("1/2")],
            ["1", "2", "tuesday", r"$\boxed{1/2}$"],
        )
        assert [v.reason for v in verdicts] == ["no_answer", "no_answer", "correct", "correct"]
        assert pool._pool == []  # workers start lazily, and only when there is work


def test_distinct_canonical_integers_are_wrong_without_a_worker():
    with Grader(workers=1) as pool:
        verdicts = pool.grade([boxed("27"), boxed("-4"), boxed("$26$.")], ["26", "4", "27"])
        assert [v.reason for v in verdicts] == ["wrong", "wrong", "wrong"]
        assert pool._pool == []


@pytest.mark.parametrize(
    ("gold", "answer", "decided"),
    [
        ("26", "27", True),
        ("-3", "3", True),
        ("0", "10", True),
        ("7", "007", False),  # another spelling of 7: math-verify decides
        ("0", "-0", False),
        ("1,000", "1000", False),
        ("1.5", "2", False),
        ("10", "1" + "0" * 15, False),  # 16 digits: past what the shortcut takes
        ("x", "3", False),
        ("1", "1\\text{2}", False),  # normalize_answer would join it into 12; math-verify reads 1
        ("0", "\\mathrm{1}0", False),
    ],
)
def test_only_distinct_canonical_integers_skip_math_verify(gold: str, answer: str, decided: bool):
    assert _distinct_integers(gold, answer) is decided
    if decided:  # and math-verify agrees that they differ
        assert _compare(gold, answer) == "wrong"


def test_lengths_must_match(grader: Grader):
    with pytest.raises(ValueError):
        grader.grade([boxed("1")], ["1", "2"])


def test_close_is_idempotent_and_pool_restarts():
    pool = Grader(workers=1)
    pool.close()
    assert pool.grade([boxed("2.0")], ["2"])[0].correct
    assert len(pool._pool) == 1
    pool.close()
    pool.close()
    assert pool.grade([boxed("3")], ["2"])[0].reason == "wrong"  # restarts lazily
    pool.close()


def test_timeout_kills_and_replaces_the_worker():
    with Grader(workers=1, timeout_s=1.0) as pool:
        assert pool.grade([boxed("1.0")], ["1"])[0].correct  # start the worker outside the clock
        pid = pool._pool[0].proc.pid
        start = time.monotonic()
        # 9^(9^9) is a 370-million-digit integer: SymPy grinds in C, where no signal reaches it.
        verdicts = pool.grade([boxed("9^{9^{9}}"), boxed("2")], ["1", "2"])
        elapsed = time.monotonic() - start
        assert verdicts[0] == Verdict(correct=False, reason="timeout", extracted="9^{9^{9}}")
        assert verdicts[1].reason == "correct"  # graded by the replacement worker
        assert 1.0 <= elapsed < 10.0
        assert pool._pool[0].proc.pid != pid
        assert pool.grade([boxed("3.0")], ["3"])[0].correct


def test_killed_worker_is_replaced():
    with Grader(workers=2, timeout_s=10.0) as pool:
        assert all(v.correct for v in pool.grade([boxed("1.0")] * 4, ["1"] * 4))
        victim = pool._pool[0].proc
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(5)
        verdicts = pool.grade([boxed(f"{i}.0") for i in range(8)], [str(i) for i in range(8)])
        assert all(v.correct for v in verdicts)
        assert victim.pid not in [w.proc.pid for w in pool._pool]


def test_item_that_crashes_its_worker_twice_is_a_parse_error():
    def kill_busy_workers(pool: Grader, times: int) -> None:
        killed: set[int] = set()
        deadline = time.monotonic() + 30
        while len(killed) < times and time.monotonic() < deadline:
            busy = [w.proc.pid for w in list(pool._pool) if w.job is not None]
            for pid in set(busy) - killed:
                os.kill(pid, signal.SIGKILL)  # stands in for a segfault mid-item
                killed.add(pid)
            time.sleep(0.01)

    with Grader(workers=1, timeout_s=30.0) as pool:
        assert pool.grade([boxed("1.0")], ["1"])[0].correct
        killer = threading.Thread(target=kill_busy_workers, args=(pool, 2))
        killer.start()
        # The slow item keeps the worker busy until it is killed; after the first crash it is
        # retried once on a fresh worker, after the second it is given up.
        verdicts = pool.grade([boxed("9^{9^{9}}"), boxed("2")], ["1", "2"])
        killer.join()
        assert [v.reason for v in verdicts] == ["parse_error", "correct"]


def test_threads_share_one_grader(grader: Grader):
    results: dict[int, list[Verdict]] = {}

    def work(thread: int) -> None:
        golds = [str(thread * 100 + i) for i in range(12)]
        # Every third prediction is off by one, so a cross-thread mix-up cannot pass; the
        # ".0" keeps the parent's string shortcut out of the way.
        texts = [boxed(f"{int(g) + (i % 3 == 0)}.0") for i, g in enumerate(golds)]
        results[thread] = grader.grade(texts, golds)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [0, 1, 2, 3]
    for thread, verdicts in results.items():
        assert [v.correct for v in verdicts] == [i % 3 != 0 for i in range(12)], thread
        assert [v.extracted for v in verdicts] == [f"{thread * 100 + i + (i % 3 == 0)}.0" for i in range(12)]


def test_parent_never_loads_the_math_stack():
    # Untrusted text may only be sympified in workers, so the parent must not even import it.
    # A fresh interpreter, because other tests' imports (torch) pull SymPy into this one.
    code = (
        "import sys\n"
        "from intrain.grading import Grader\n"
        "with Grader(workers=1) as g:\n"
        "    assert g.grade([r'\\boxed{\\frac{2}{4}}'], ['0.5'])[0].correct\n"
        "loaded = [m for m in ('sympy', 'math_verify', 'latex2sympy2_extended') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

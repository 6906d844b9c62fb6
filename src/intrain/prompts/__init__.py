"""Proposer prompts: Jinja templates rendered into chat messages, capped to a token budget.

`paper` is the two-turn conversation of the paper (solve with the reference first, then verify the
numbered attempt and propose an intervention); `compact` is one turn for small models; any other
value is a path to a user template (single turn) that receives the same variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from intrain.steps import Substep, render_numbered

_HERE = Path(__file__).parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_HERE)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    autoescape=False,
)


@dataclass(frozen=True)
class ProposerTemplate:
    verify: jinja2.Template
    solve: jinja2.Template | None  # the paper's first turn; None for single-turn templates

    @property
    def two_turn(self) -> bool:
        return self.solve is not None


# Packaged templates: name -> (verify turn, solve turn or None). Loading and fingerprints both read this.
_PACKAGED: dict[str, tuple[str, str | None]] = {
    "paper": ("paper_verify.jinja", "paper_solve.jinja"),
    "compact": ("compact.jinja", None),
}


def template_source(name_or_path: str) -> str | None:
    """The text of the template files `name_or_path` stands for (None: no such file), for fingerprints:
    a packaged template edited between releases, or a user's file edited in place, is another input."""
    if name_or_path in _PACKAGED:
        files = [_HERE / f for f in _PACKAGED[name_or_path] if f is not None]
    else:
        files = [Path(name_or_path)]
    try:
        return "\n".join(f.read_text() for f in files)
    except OSError:
        return None


def load_template(name_or_path: str) -> ProposerTemplate:
    if name_or_path in _PACKAGED:
        verify, solve = _PACKAGED[name_or_path]
        return ProposerTemplate(
            verify=_ENV.get_template(verify), solve=_ENV.get_template(solve) if solve is not None else None
        )
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"propose.template: {name_or_path} is neither 'paper', 'compact' nor a file")
    return ProposerTemplate(verify=jinja2.Template(path.read_text(), undefined=jinja2.StrictUndefined), solve=None)


def render_reflection(problem: str, reference_solution: str, attempt: str) -> str:
    """The self-reflection baseline's prompt: rewrite a failed attempt into a whole corrected solution."""
    return _ENV.get_template("reflect.jinja").render(
        problem=problem, reference_solution=reference_solution, attempt=attempt
    )


def solve_messages(template: ProposerTemplate, problem: str, reference_solution: str) -> list[dict[str, str]]:
    assert template.solve is not None
    return [{"role": "user", "content": template.solve.render(problem=problem, reference_solution=reference_solution)}]


@dataclass(frozen=True)
class VerifyPrompt:
    messages: list[dict[str, str]]
    shown_substeps: int  # substeps of the attempt that fit in the budget
    truncated: bool


def verify_prompt(
    template: ProposerTemplate,
    tokenizer,
    *,
    problem: str,
    reference_solution: str,
    answer: str,
    substeps: list[Substep],
    max_tokens: int,
    history: list[dict[str, str]] | None = None,
) -> VerifyPrompt:
    """The verification turn, with trailing substeps of the attempt dropped until it fits `max_tokens`.

    Instructions, problem and reference always stay: without them no intervention is possible,
    whereas a proposer shown the start of an attempt can still find an early error.
    """
    history = history or []

    def render(shown: int) -> list[dict[str, str]]:
        text = template.verify.render(
            problem=problem,
            reference_solution=reference_solution,
            answer=answer,
            attempt=render_numbered(substeps[:shown]),
            num_substeps=shown,
        )
        return [*history, {"role": "user", "content": text}]

    def length(messages: list[dict[str, str]]) -> int:
        return len(_chat_ids(tokenizer, messages))

    shown = len(substeps)
    if length(render(shown)) <= max_tokens:
        return VerifyPrompt(render(shown), shown, False)
    low, high = 0, shown  # largest `shown` that fits, by bisection (rendering is cheap, tokenizing is not free)
    while low < high:
        mid = (low + high + 1) // 2
        if length(render(mid)) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return VerifyPrompt(render(low), low, True)


def _chat_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    from intrain.engines.base import Request, render_ids

    return render_ids(tokenizer, Request(messages=messages))

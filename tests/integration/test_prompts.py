from transformers import AutoTokenizer

from intrain.engines.base import Request, render_ids
from intrain.prompts import load_template, render_reflection, solve_messages, verify_prompt
from intrain.steps import split_substeps

ATTEMPT = "\n\n".join(f"Step {i}: {i} + {i} = {2 * i}." for i in range(1, 41))


def test_paper_template_has_the_papers_sections():
    template = load_template("paper")
    assert template.two_turn
    solve = solve_messages(template, "P?", "REF")[0]["content"]
    assert "# Problem #\nP?" in solve and "REF" in solve
    text = template.verify.render(
        problem="P?", reference_solution="REF", answer="42", attempt="**Substep 1:** x", num_substeps=1
    )
    for needle in (
        "Detailed Verification Log",
        "Critical Error",
        "Intervention Step",
        "(42)",
        "<intervention>",
        '"location"',
        "# Incorrect Student Attempt #\n**Substep 1:** x",
        "student's own voice",
    ):
        assert needle in text


def test_compact_and_user_templates(tmp_path):
    compact = load_template("compact")
    assert not compact.two_turn
    custom = tmp_path / "mine.jinja"
    custom.write_text("{{ problem }} | {{ attempt }} | {{ num_substeps }}")
    assert (
        load_template(str(custom)).verify.render(
            problem="p", attempt="a", num_substeps=3, reference_solution="", answer=""
        )
        == "p | a | 3"
    )


def test_verify_prompt_truncates_trailing_substeps_to_budget(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = load_template("compact")
    steps = split_substeps(ATTEMPT)
    full = verify_prompt(
        template, tok, problem="P", reference_solution="R", answer="1", substeps=steps, max_tokens=100_000
    )
    assert not full.truncated and full.shown_substeps == 40
    budget = len(render_ids(tok, Request(messages=full.messages))) // 2
    cut = verify_prompt(
        template, tok, problem="P", reference_solution="R", answer="1", substeps=steps, max_tokens=budget
    )
    assert cut.truncated and 0 < cut.shown_substeps < 40
    assert len(render_ids(tok, Request(messages=cut.messages))) <= budget
    content = cut.messages[-1]["content"]
    assert f"**Substep {cut.shown_substeps}:**" in content and f"**Substep {cut.shown_substeps + 1}:**" not in content
    # The instructions, problem and reference survive any cut.
    assert "# Reference Solution #\nR" in content


def test_reflection_prompt():
    text = render_reflection("P?", "REF", "my attempt")
    assert "P?" in text and "REF" in text and "my attempt" in text and "\\boxed{}" in text

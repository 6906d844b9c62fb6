"""render_ids and the HF engine on the tiny model; the vLLM engine's mapping against a stand-in module."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import pytest
import torch

from intrain.engines import (
    Completion,
    Generator,
    Request,
    SamplingParams,
    derive_seed,
    render_ids,
)

USER = [{"role": "user", "content": "What is 12 + 7? Put the final answer in \\boxed{}."}]


def chat(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}])


# --------------------------------------------------------------------------------------------
# render_ids
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from intrain.models import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def test_render_ids_chat_matches_template(tok):
    ids = render_ids(tok, Request(messages=USER))
    text = tok.apply_chat_template(USER, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert all(isinstance(i, int) for i in ids)


def test_render_ids_continue_final_has_no_end_of_turn(tok):
    prefix = "Step 1: 12 + 7 = 19"
    msgs = USER + [{"role": "assistant", "content": prefix}]
    ids = render_ids(tok, Request(messages=msgs, continue_final=True))
    head = render_ids(tok, Request(messages=USER))
    tail = tok(prefix, add_special_tokens=False)["input_ids"]
    assert ids == head + tail
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    assert ids[-1] != end_of_turn
    assert ids.count(end_of_turn) == 1  # only the user turn's
    assert tok.decode(ids).endswith("<|im_start|>assistant\n" + prefix)


def test_render_ids_raw_prompt(tok):
    prompt = "Question: 2 + 3 = ?\nAnswer:"
    ids = render_ids(tok, Request(prompt=prompt))
    assert ids == tok(prompt)["input_ids"]
    assert tok.decode(ids) == prompt  # no chat template


def test_render_ids_chat_template_kwargs(tok):
    t = copy.deepcopy(tok)
    t.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and not enable_thinking %}wait\n\n{% endif %}{% endif %}"
    )
    plain = render_ids(t, Request(messages=USER))
    off = render_ids(t, Request(messages=USER), chat_template_kwargs={"enable_thinking": False})
    assert t.decode(off) == t.decode(plain) + "wait\n\n"


# --------------------------------------------------------------------------------------------
# HFGenerator on the tiny random model
# --------------------------------------------------------------------------------------------


class Script:
    """Forces the model's next token through a forward hook.

    ``tokens[i]`` is forced at generation step i (the last one repeats); ``ban`` tokens get -inf.
    Step 0 is recognised by a multi-token (prefill) input, so each batch restarts the script.
    """

    def __init__(self, model, tokens=None, ban=()):
        self.tokens, self.ban, self.step = list(tokens or []), list(ban), -1
        self.handle = model.register_forward_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.step = 0 if ids is not None and ids.shape[1] > 1 else self.step + 1
        logits = output.logits
        if self.ban:
            logits[..., self.ban] = -math.inf
        if self.tokens:
            forced = self.tokens[min(self.step, len(self.tokens) - 1)]
            logits[..., forced] = logits.max() + 1e4
        return output

    def remove(self):
        self.handle.remove()


def test_hf_generator_satisfies_protocol(tiny_generator):
    assert isinstance(tiny_generator, Generator)
    assert tiny_generator.tokenizer.padding_side == "left"


def test_hf_shapes_order_and_n(tiny_generator):
    reqs = [
        chat("What is 1 + 1? Please think step by step and put the answer in a box."),
        Request(prompt="2 + 2 ="),
        Request(messages=USER, n=3),
        Request(messages=USER + [{"role": "assistant", "content": "Step 1:"}], continue_final=True, n=2),
    ]
    progress = []
    out = tiny_generator.generate(
        reqs, SamplingParams(max_tokens=5, seed=3), on_progress=lambda s, t: progress.append((s, t))
    )
    assert [len(o) for o in out] == [1, 1, 3, 2]
    for req, comps in zip(reqs, out):
        expected_prompt = len(render_ids(tiny_generator.tokenizer, req))
        for c in comps:
            assert isinstance(c, Completion)
            assert c.prompt_tokens == expected_prompt  # proves results went back to their request
            assert 1 <= len(c.token_ids) <= 5
            assert c.finish_reason in ("stop", "length")
            assert c.logprobs is None
    assert sum(s for s, _ in progress) == 7
    assert sum(t for _, t in progress) == sum(len(c.token_ids) for o in out for c in o)
    assert len(progress) == 7  # reported as each sequence ends
    # n samples of one request are sampled independently
    assert len({tuple(c.token_ids) for c in out[2]}) > 1


def test_hf_same_seed_same_outputs_different_seed_differs(tiny_generator):
    reqs = [chat("What is 3 * 4?"), Request(prompt="5 - 2 =", n=2)]
    a = tiny_generator.generate(reqs, SamplingParams(max_tokens=8, seed=11))
    b = tiny_generator.generate(reqs, SamplingParams(max_tokens=8, seed=11))
    c = tiny_generator.generate(reqs, SamplingParams(max_tokens=8, seed=12))
    assert a == b
    assert a != c


def test_hf_generate_leaves_global_rng_alone(tiny_generator):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_generator.generate([chat("hi")], SamplingParams(max_tokens=3, seed=5))
    assert torch.equal(torch.rand(3), expected)


def test_hf_greedy_is_deterministic_and_batch_independent(tiny_model_dir):
    from intrain.engines.hf import HFGenerator

    reqs = [chat("What is 12 + 7?"), Request(prompt="Let x = 5. Then x * 3 = ?\n\nwait, check: 5*3 =")]
    one = HFGenerator.load(tiny_model_dir, device="cpu", batch_size=1)
    many = HFGenerator.load(tiny_model_dir, device="cpu", batch_size=8)
    g = SamplingParams(temperature=0, max_tokens=10, seed=0)
    a = one.generate(reqs, g)
    assert a == one.generate(reqs, SamplingParams(temperature=0, max_tokens=10, seed=99))  # seed is moot
    b = many.generate(reqs, g)  # left padding must not change the result
    assert [c.token_ids for o in a for c in o] == [c.token_ids for o in b for c in o]


def test_hf_max_tokens_gives_length(tiny_generator):
    eos = tiny_generator.eos_token_ids
    script = Script(tiny_generator.model, ban=eos)
    try:
        out = tiny_generator.generate([chat("count"), Request(prompt="1 2 3", n=2)], SamplingParams(max_tokens=6))
    finally:
        script.remove()
    for c in (c for o in out for c in o):
        assert c.finish_reason == "length"
        assert len(c.token_ids) == 6
        assert not set(c.token_ids) & set(eos)


def test_hf_eos_ends_completion(tiny_generator):
    tok = tiny_generator.tokenizer
    body = tok("12 + 7 = 19", add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    script = Script(tiny_generator.model, tokens=body + [eos, body[0]])
    try:
        out = tiny_generator.generate(
            [chat("What is 12 + 7?"), Request(prompt="x", n=2)], SamplingParams(max_tokens=40, logprobs=True)
        )
    finally:
        script.remove()
    for c in (c for o in out for c in o):
        assert c.finish_reason == "stop"
        assert c.token_ids == body + [eos]  # EOS kept in ids, nothing (no padding) after it
        assert c.text == "12 + 7 = 19"  # ... but not in the text
        assert len(c.logprobs) == len(c.token_ids)


def test_hf_stop_string_cuts_text(tiny_generator):
    tok = tiny_generator.tokenizer
    body = tok("Step 1: 12 + 7 = 19\n\nStep 2: so the answer is 19", add_special_tokens=False)["input_ids"]
    script = Script(tiny_generator.model, tokens=body)
    try:
        out = tiny_generator.generate(
            [chat("go"), chat("go on, a longer prompt than the other")],
            SamplingParams(max_tokens=len(body) + 5, stop=("\n\n", "never"), logprobs=True),
        )
    finally:
        script.remove()
    for c in (c for o in out for c in o):
        assert c.finish_reason == "stop"
        assert c.text == "Step 1: 12 + 7 = 19"
        decoded = tok.decode(c.token_ids)
        assert "\n\n" in decoded and "Step 2" not in decoded  # stopped right after the stop string
        assert len(c.logprobs) == len(c.token_ids) < len(body)


def test_hf_stop_string_absent_keeps_length(tiny_generator):
    script = Script(tiny_generator.model, ban=tiny_generator.eos_token_ids)
    try:
        out = tiny_generator.generate([chat("go")], SamplingParams(max_tokens=5, stop=("\u2603",)))
    finally:
        script.remove()
    assert out[0][0].finish_reason == "length" and len(out[0][0].token_ids) == 5


def test_hf_logprobs_match_processed_distribution(tiny_generator):
    sp = SamplingParams(temperature=0.7, top_k=50, top_p=0.9, max_tokens=8, seed=4, logprobs=True)
    req = chat("What is 6 * 7?")
    script = Script(tiny_generator.model, ban=tiny_generator.eos_token_ids)  # full 8 tokens
    try:
        ((c,),) = tiny_generator.generate([req], sp)
    finally:
        script.remove()
    assert len(c.logprobs) == len(c.token_ids) == 8
    assert all(x <= 0 and math.isfinite(x) for x in c.logprobs)

    # Recompute: temperature -> top-k -> top-p -> log_softmax, read at the sampled tokens.
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    prompt = render_ids(tiny_generator.tokenizer, req)
    full = torch.tensor([prompt + c.token_ids])
    with torch.no_grad():
        logits = tiny_generator.model(full).logits[0, len(prompt) - 1 : -1].float()
    eos = tiny_generator.eos_token_ids
    logits[:, eos] = -math.inf  # the ban applied during generation
    expected = []
    for t, row in enumerate(logits):
        x = row[None]
        for w in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), TopPLogitsWarper(0.9)):
            x = w(full[:, : len(prompt) + t], x)
        expected.append(torch.log_softmax(x, -1)[0, c.token_ids[t]].item())
    assert c.logprobs == pytest.approx(expected, abs=1e-4)


def test_hf_greedy_logprobs_are_model_logprobs(tiny_generator):
    ((c,),) = tiny_generator.generate([chat("hi")], SamplingParams(temperature=0, max_tokens=4, logprobs=True))
    prompt = render_ids(tiny_generator.tokenizer, chat("hi"))
    full = torch.tensor([prompt + c.token_ids])
    with torch.no_grad():
        lp = torch.log_softmax(tiny_generator.model(full).logits[0, len(prompt) - 1 : -1].float(), -1)
    expected = [lp[t, tid].item() for t, tid in enumerate(c.token_ids)]
    assert c.logprobs == pytest.approx(expected, abs=1e-4)
    assert c.token_ids == lp.argmax(-1).tolist()


def test_hf_ignores_checkpoint_sampling_defaults(tiny_generator):
    reqs = [chat("What is 9 - 4?")]
    sp = SamplingParams(max_tokens=8, seed=2)
    before = tiny_generator.generate(reqs, sp)
    gc = tiny_generator.model.generation_config
    gc.top_k, gc.repetition_penalty = 1, 5.0
    try:
        after = tiny_generator.generate(reqs, sp)
        assert tiny_generator.model.generation_config is gc  # restored after the call
    finally:
        gc.top_k, gc.repetition_penalty = None, None
    assert before == after


def test_hf_empty_request_list(tiny_generator):
    assert tiny_generator.generate([], SamplingParams()) == []


@pytest.mark.requires_gpu
def test_hf_generator_on_cuda(tiny_model_dir):
    from intrain.engines.hf import HFGenerator

    gen = HFGenerator.load(tiny_model_dir, device="auto", dtype="auto", batch_size=4)
    assert gen.device.type == "cuda" and gen.model.dtype == torch.bfloat16
    reqs = [chat("What is 1 + 2?"), Request(prompt="3 + 4 =", n=3)]
    sp = SamplingParams(temperature=0.8, top_k=20, max_tokens=16, seed=1, logprobs=True, stop=("\n\n",))
    a = gen.generate(reqs, sp)
    assert a == gen.generate(reqs, sp)
    assert [len(o) for o in a] == [1, 3]
    for c in (c for o in a for c in o):
        assert len(c.logprobs) == len(c.token_ids) and all(x <= 0 for x in c.logprobs)


# --------------------------------------------------------------------------------------------
# VLLMGenerator: the mapping logic, against a stand-in `vllm` module (the real one is GPU-only)
# --------------------------------------------------------------------------------------------


def test_vllm_engine_without_vllm_names_the_extra(tiny_model_dir, monkeypatch):
    import sys

    from intrain.engines import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"needs the 'gpu' extra: pip install 'intrain\[gpu\]'"):
        VLLMGenerator(tiny_model_dir)


def _install_fake_vllm(monkeypatch):
    import sys
    import types
    from dataclasses import dataclass, field

    fake = types.ModuleType("vllm")
    inputs = types.ModuleType("vllm.inputs")

    class TokensPrompt(dict):
        def __init__(self, prompt_token_ids):
            super().__init__(prompt_token_ids=prompt_token_ids)

    @dataclass
    class FakeSamplingParams:
        n: int = 1
        temperature: float = 1.0
        top_p: float = 1.0
        top_k: int = -1
        max_tokens: int = 16
        seed: int | None = None
        stop: list | None = None
        include_stop_str_in_output: bool = False
        logprobs: int | None = None
        skip_special_tokens: bool = True

    @dataclass
    class Logprob:
        logprob: float

    @dataclass
    class CompletionOutput:
        index: int
        text: str
        token_ids: list
        finish_reason: str
        logprobs: list | None = None

    @dataclass
    class RequestOutput:
        prompt_token_ids: list
        outputs: list = field(default_factory=list)

    class LLM:
        instances: ClassVar[list] = []

        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.calls = []
            LLM.instances.append(self)

        def generate(self, prompts, sampling_params, *, use_tqdm=True):
            self.calls.append((prompts, sampling_params, use_tqdm))
            results = []
            for prompt, sp in zip(prompts, sampling_params):
                outs = []
                for i in reversed(range(sp.n)):  # any order; `index` decides
                    ids = [5 + i, 6, 2]
                    lps = (
                        [{t: Logprob(-0.1 * (k + 1)), 999: Logprob(-9.0)} for k, t in enumerate(ids)]
                        if sp.logprobs
                        else None
                    )
                    outs.append(CompletionOutput(i, f"s{i}", ids, "length" if sp.max_tokens <= 3 else "stop", lps))
                results.append(RequestOutput(list(prompt["prompt_token_ids"]), outs))
            return results

    fake.LLM, fake.SamplingParams, fake.inputs = LLM, FakeSamplingParams, inputs
    inputs.TokensPrompt = TokensPrompt
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    return fake


def test_vllm_engine_mapping_with_stand_in(tiny_model_dir, monkeypatch):
    fake = _install_fake_vllm(monkeypatch)
    from intrain.engines import VLLMGenerator

    gen = VLLMGenerator(
        tiny_model_dir, max_model_len=512, chat_template_kwargs={"enable_thinking": False}, enforce_eager=True
    )
    llm = fake.LLM.instances[-1]
    assert llm.kwargs["model"] == tiny_model_dir and llm.kwargs["max_model_len"] == 512
    assert llm.kwargs["enable_prefix_caching"] is True and llm.kwargs["gpu_memory_utilization"] == 0.85
    assert llm.kwargs["enforce_eager"] is True and llm.kwargs["logprobs_mode"] == "processed_logprobs"
    assert isinstance(gen, Generator) and gen.tokenizer is not None

    reqs = [
        chat("a"),
        Request(prompt="1 + 1 =", n=3),
        Request(messages=USER + [{"role": "assistant", "content": "Step"}], continue_final=True),
    ]
    progress = []
    sp = SamplingParams(temperature=0.6, top_p=0.9, top_k=0, max_tokens=32, seed=7, stop=("\n\n",), logprobs=True)
    out = gen.generate(reqs, sp, on_progress=lambda s, t: progress.append((s, t)))

    prompts, params, use_tqdm = llm.calls[-1]
    assert use_tqdm is False
    assert [p["prompt_token_ids"] for p in prompts] == [
        render_ids(gen.tokenizer, r, {"enable_thinking": False}) for r in reqs
    ]
    assert [p.n for p in params] == [1, 3, 1]
    assert all(p.top_k == -1 and p.top_p == 0.9 and p.temperature == 0.6 and p.max_tokens == 32 for p in params)
    assert all(p.stop == ["\n\n"] and p.logprobs == 1 and not p.include_stop_str_in_output for p in params)
    assert [p.seed for p in params] == [derive_seed(7, i) for i in range(3)]

    assert [len(o) for o in out] == [1, 3, 1]
    assert [c.text for c in out[1]] == ["s0", "s1", "s2"]
    c = out[1][2]
    assert c.token_ids == [7, 6, 2] and c.finish_reason == "stop"
    assert c.logprobs == pytest.approx([-0.1, -0.2, -0.3])
    assert c.prompt_tokens == len(prompts[1]["prompt_token_ids"])

    # A request's own seed goes to vLLM as it is (vLLM seeds sample j with seed + j).
    gen.generate([chat("a"), Request(prompt="1 + 1 =", n=2, seed=41)], sp)
    assert [p.seed for p in llm.calls[-1][1]] == [derive_seed(7, 0), 41]
    assert progress == [(5, 15)]

    gen.generate([chat("b")], SamplingParams(top_k=5, max_tokens=3))
    (p,) = llm.calls[-1][1]
    assert p.top_k == 5 and p.stop is None and p.logprobs is None

"""The vLLM engine on a real GPU (skipped without CUDA or without the 'gpu' extra).

Builds a tiny random Qwen3 with head_dim 64 (vLLM's attention kernels reject head_dim 16) and
checks the engine against the protocol and against the HF engine's view of the same weights.
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.requires_gpu

USER = [{"role": "user", "content": "What is 12 + 7? Put the final answer in \\boxed{}."}]


@pytest.fixture(scope="module")
def vllm_model_dir(tiny_model_factory):
    return tiny_model_factory(hidden_size=256, num_heads=4, num_kv_heads=2, head_dim=64)


@pytest.fixture(scope="module")
def vllm_gen(vllm_model_dir):
    pytest.importorskip("vllm")
    from intrain.engines.vllm import VLLMGenerator

    gen = VLLMGenerator(
        vllm_model_dir, gpu_memory_utilization=0.3, max_model_len=512, dtype="float32", enforce_eager=True
    )
    yield gen
    del gen


def test_vllm_shapes_order_determinism(vllm_gen):
    from intrain.engines import Request, SamplingParams, render_ids

    reqs = [
        Request(messages=USER),
        Request(prompt="2 + 2 =", n=3),
        Request(messages=USER + [{"role": "assistant", "content": "Step 1:"}], continue_final=True, n=2),
    ]
    sp = SamplingParams(temperature=1.0, top_k=20, max_tokens=12, seed=3, logprobs=True)
    progress = []
    a = vllm_gen.generate(reqs, sp, on_progress=lambda s, t: progress.append((s, t)))
    b = vllm_gen.generate(reqs, sp)
    assert [len(o) for o in a] == [1, 3, 2]
    assert [[c.token_ids for c in o] for o in a] == [[c.token_ids for c in o] for o in b]
    assert sum(s for s, _ in progress) == 6
    for req, comps in zip(reqs, a):
        for c in comps:
            assert c.prompt_tokens == len(render_ids(vllm_gen.tokenizer, req))
            assert 1 <= len(c.token_ids) <= 12
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert len(c.token_ids) == 12
            assert len(c.logprobs) == len(c.token_ids) and all(x <= 0 for x in c.logprobs)
    assert len({tuple(c.token_ids) for c in a[1]}) > 1
    c = vllm_gen.generate(reqs, SamplingParams(temperature=1.0, top_k=20, max_tokens=12, seed=4))
    assert [[x.token_ids for x in o] for o in a] != [[x.token_ids for x in o] for o in c]


def test_vllm_stop_string_is_cut(vllm_gen):
    from intrain.engines import Request, SamplingParams

    out = vllm_gen.generate([Request(prompt="1 2 3", n=8)], SamplingParams(max_tokens=40, stop=(" ",), seed=1))
    for c in out[0]:
        assert " " not in c.text
        if c.finish_reason == "length":
            assert len(c.token_ids) == 40


def test_vllm_greedy_matches_hf_forward(vllm_gen, vllm_model_dir):
    """Greedy tokens and their logprobs agree with a float32 HF forward over the same prompt ids."""
    import torch

    from intrain.engines import Request, SamplingParams, render_ids
    from intrain.models import load_model_and_tokenizer

    req = Request(messages=USER + [{"role": "assistant", "content": "Step 1: 12"}], continue_final=True)
    ((c,),) = vllm_gen.generate([req], SamplingParams(temperature=0, max_tokens=8, logprobs=True))
    model, tok = load_model_and_tokenizer(vllm_model_dir, device="cuda", dtype="float32")
    prompt = render_ids(tok, req)
    full = torch.tensor([prompt + c.token_ids], device="cuda")
    with torch.no_grad():
        lp = torch.log_softmax(model(full).logits[0, len(prompt) - 1 : -1].float(), -1)
    hf = [lp[t, tid].item() for t, tid in enumerate(c.token_ids)]
    assert all(math.isclose(a, b, abs_tol=2e-2) for a, b in zip(c.logprobs, hf))
    # greedy: each chosen token is (within float noise) the argmax
    assert all(lp[t].max().item() - hf[t] < 2e-2 for t in range(len(hf)))


def test_vllm_greedy_n_and_prompt_limits(vllm_gen):
    """vLLM itself refuses greedy n > 1 and rejects a whole call for one over-long prompt."""
    from intrain.engines import Request, SamplingParams

    (out,) = vllm_gen.generate([Request(messages=USER, n=3)], SamplingParams(temperature=0, max_tokens=8))
    assert len(out) == 3 and all(c.token_ids == out[0].token_ids for c in out)
    assert out[1] is not out[0] and out[1].token_ids is not out[0].token_ids
    with pytest.raises(ValueError, match="request 1 renders to"):
        vllm_gen.generate([Request(prompt="1"), Request(prompt="1 " * 2000)], SamplingParams(max_tokens=4))

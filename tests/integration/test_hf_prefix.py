"""The HF engine prefills a prompt shared by several rows of a batch once (``HFGenerator.share_prefix``).

Counted at the embedding layer, which every token fed to the model passes through: with sharing, a
request with ``n`` samples costs one prefill of its prompt (minus the last token) plus one token per
row, instead of ``n`` prefills. The outputs are those of the unshared path.
"""

from __future__ import annotations

import itertools
import math

import pytest

from intrain.engines import Request, SamplingParams, hf_decode, render_ids
from intrain.engines.hf import HFGenerator

USER = [{"role": "user", "content": "What is 12 + 7? Put the final answer in \\boxed{}."}]


def chat(text: str, n: int = 1) -> Request:
    return Request(messages=[{"role": "user", "content": text}], n=n)


@pytest.fixture()
def pair(tiny_model_dir):
    """The same weights behind a sharing and a non-sharing engine (batch 8, CPU, fp32)."""
    new = HFGenerator.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=8)
    old = HFGenerator(new.model, new.tokenizer, batch_size=8, share_prefix=False)
    return new, old


class Fed:
    """Records the (rows, columns) of every input that reaches the embedding layer; can ban EOS."""

    def __init__(self, gen: HFGenerator, ban_eos: bool = False):
        self.shapes: list[tuple[int, int]] = []
        self.handles = [gen.model.get_input_embeddings().register_forward_hook(self._record)]
        if ban_eos:
            eos = gen.eos_token_ids

            def ban(module, args, output):
                output.logits[..., eos] = -math.inf
                return output

            self.handles.append(gen.model.register_forward_hook(ban))

    def _record(self, module, args, output):
        self.shapes.append(tuple(args[0].shape))

    def tokens(self) -> int:
        return sum(r * c for r, c in self.shapes)

    def remove(self):
        for h in self.handles:
            h.remove()


def fed(gen: HFGenerator, requests, sampling, ban_eos: bool = True):
    probe = Fed(gen, ban_eos=ban_eos)
    try:
        return gen.generate(requests, sampling), probe.shapes, probe.tokens()
    finally:
        probe.remove()


def test_n_samples_prefill_the_prompt_once(pair):
    new, old = pair
    req = chat("What is 3 * 4? Think step by step, then put the final answer in a box.", n=4)
    length = len(render_ids(new.tokenizer, req))
    steps = 6
    sp = SamplingParams(max_tokens=steps, seed=1)

    out_old, shapes_old, _ = fed(old, [req], sp)
    out_new, shapes_new, _ = fed(new, [req], sp)
    # Old: four copies of the whole prompt, then one token per row per further step.
    assert shapes_old == [(4, length)] + [(4, 1)] * (steps - 1)
    # New: the prompt but its last token once; then generate feeds each row's last prompt token.
    assert shapes_new == [(1, length - 1)] + [(4, 1)] * steps
    prompt_tokens_old = 4 * length
    prompt_tokens_new = (length - 1) + 4
    assert shapes_old[0][0] * shapes_old[0][1] == prompt_tokens_old
    assert shapes_new[0][0] * shapes_new[0][1] + shapes_new[1][0] == prompt_tokens_new
    assert [c.token_ids for c in out_new[0]] == [c.token_ids for c in out_old[0]]


def test_distinct_prompts_in_a_batch_each_prefilled_once(pair):
    new, _ = pair
    reqs = [chat("What is 9 - 4?", n=3), chat("What is 9 - 4?"), Request(prompt="5 - 2 =", n=2), chat("hi")]
    lengths = [len(render_ids(new.tokenizer, r)) for r in reqs]
    _, shapes, _ = fed(new, reqs, SamplingParams(max_tokens=3, seed=2))
    # 7 rows, 3 distinct prompts (requests 0 and 1 are the same prompt): one prefill of 3 rows.
    assert shapes[0] == (3, max(lengths) - 1)
    assert shapes[1:] == [(7, 1)] * 3


def test_no_duplicates_takes_the_plain_path(pair):
    new, _ = pair
    reqs = [chat("What is 9 - 4?"), Request(prompt="5 - 2 =")]
    width = max(len(render_ids(new.tokenizer, r)) for r in reqs)
    _, shapes, _ = fed(new, reqs, SamplingParams(max_tokens=3, seed=2))
    assert shapes == [(2, width)] + [(2, 1)] * 2


def test_shared_outputs_equal_unshared_outputs(pair):
    """Same sampling steps on the same rows consume the random stream alike, so the samples agree
    (logits differ only by float rounding, as the prompt's last token now runs as a decode step)."""
    new, old = pair
    reqs = [
        chat("What is 1 + 1? Please think step by step and put the answer in a box."),
        Request(prompt="x", n=2),  # a one-token prompt: nothing of it is in the shared prefill
        Request(messages=USER, n=3),
        Request(messages=USER + [{"role": "assistant", "content": "Step 1:"}], continue_final=True, n=4),
    ]
    for sp in (
        SamplingParams(max_tokens=12, seed=3, logprobs=True),
        SamplingParams(temperature=0.7, top_k=20, top_p=0.9, max_tokens=12, seed=5, logprobs=True, stop=("\n",)),
    ):
        a, b = new.generate(reqs, sp), old.generate(reqs, sp)
        for ca, cb in ((ca, cb) for oa, ob in zip(a, b) for ca, cb in zip(oa, ob)):
            assert (ca.token_ids, ca.text, ca.finish_reason, ca.prompt_tokens) == (
                cb.token_ids,
                cb.text,
                cb.finish_reason,
                cb.prompt_tokens,
            )
            assert ca.logprobs == pytest.approx(cb.logprobs, abs=1e-5)


def test_greedy_n_is_the_n1_output_repeated_and_decoded_once(pair):
    new, old = pair
    req = Request(messages=USER + [{"role": "assistant", "content": "Step 1:"}], continue_final=True)
    length = len(render_ids(new.tokenizer, req))
    g = SamplingParams(temperature=0, max_tokens=8, logprobs=True, seed=7)
    (single,), _, _ = fed(new, [req], g)
    (many,), shapes, _ = fed(new, [Request(messages=req.messages, continue_final=True, n=4)], g)
    assert shapes == [(1, length)] + [(1, 1)] * 7  # one row decoded, its completion copied
    assert len(many) == 4 and all(c == single[0] for c in many)
    (unshared,), _, _ = fed(old, [Request(messages=req.messages, continue_final=True, n=4)], g)
    assert [c.token_ids for c in unshared] == [single[0].token_ids] * 4
    many[0].token_ids.append(-1)  # copies, not one list shared by all samples
    assert many[1].token_ids == single[0].token_ids


def test_sampled_n_reproducible_for_a_seed_and_distinct_across_samples(pair):
    new, _ = pair
    reqs = [chat("What is 6 * 7?", n=6), Request(prompt="3 + 4 =", n=3)]
    sp = SamplingParams(temperature=1.0, max_tokens=10, seed=11)
    a, _, _ = fed(new, reqs, sp)
    b, _, _ = fed(new, reqs, sp)
    c, _, _ = fed(new, reqs, SamplingParams(temperature=1.0, max_tokens=10, seed=12))
    assert a == b
    assert a != c
    assert len({tuple(x.token_ids) for x in a[0]}) > 1
    assert len({tuple(x.token_ids) for x in a[1]}) > 1


def test_one_token_prompts_have_nothing_to_share(pair):
    new, old = pair
    req = Request(prompt="x", n=3)
    assert len(render_ids(new.tokenizer, req)) == 1
    sp = SamplingParams(max_tokens=4, seed=0)
    out, shapes, _ = fed(new, [req], sp)
    assert shapes[0] == (3, 1)
    assert out == fed(old, [req], sp)[0]  # both with EOS banned, as `fed` does


def test_batch_boundary_splits_a_request(tiny_model_dir):
    """n larger than the batch: each batch prefills the prompt once, results land in order."""
    new = HFGenerator.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=4)
    old = HFGenerator(new.model, new.tokenizer, batch_size=4, share_prefix=False)
    req = chat("Compute 7 * 8 step by step.", n=6)
    length = len(render_ids(new.tokenizer, req))
    sp = SamplingParams(max_tokens=3, seed=9)
    out, shapes, _ = fed(new, [req], sp)
    assert [s for s in shapes if s[1] > 1] == [(1, length - 1), (1, length - 1)]
    assert [c.token_ids for c in out[0]] == [c.token_ids for c in fed(old, [req], sp)[0][0]]


def test_static_cache_decodes_what_the_dynamic_cache_decodes(pair):
    """The static-cache path (on by default on CUDA, where transformers compiles it) returns the same
    greedy completions as the dynamic one, and sampled completions of the requested shape."""
    dynamic, _ = pair
    static = HFGenerator(dynamic.model, dynamic.tokenizer, batch_size=8, static_cache=True)
    requests = [chat("What is 2 + 3?"), chat("Name a colour.", n=3), chat("Count to three, please.")]
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    as_text = [[c.text for c in cs] for cs in dynamic.generate(requests, greedy)]
    assert [[c.text for c in cs] for cs in static.generate(requests, greedy)] == as_text
    sampled = static.generate(requests, SamplingParams(temperature=1.0, max_tokens=12, seed=3))
    assert [len(cs) for cs in sampled] == [1, 3, 1]
    assert all(0 < len(c.token_ids) <= 12 for cs in sampled for c in cs)
    assert sampled == static.generate(requests, SamplingParams(temperature=1.0, max_tokens=12, seed=3))


def test_static_cache_is_on_only_on_cuda(tiny_model_dir):
    assert HFGenerator.load(tiny_model_dir, device="cpu", dtype="float32").static_cache is False


def test_prompts_that_start_alike_prefill_their_common_start_once(pair):
    """Attempts at one problem under one proposer prompt: the shared start runs once (one row), each
    prompt's rest after it; the outputs are the unshared path's."""
    new, old = pair
    context = "Check the student's steps against the reference: 3 * 4 = 12, then 12 + 5 = 17. Attempt: "
    reqs = [
        chat(context + "3 * 4 = 12. 12 + 5 = 18.", n=2),
        chat(context + "3 * 4 = 7."),
        chat(context + "3 * 4 = 12. So 17 + 1 = 18, the answer.", n=2),  # 8 rows: one admission
        chat(context + "3 * 4 = 7."),  # the same prompt as the second request
        Request(prompt="An unrelated prompt =", n=2),
    ]
    ids = [render_ids(new.tokenizer, r) for r in reqs]
    common = min(sum(1 for _ in itertools.takewhile(lambda ab: ab[0] == ab[1], zip(ids[0], p))) for p in ids[1:4])
    assert common >= hf_decode.MIN_SHARED_TOKENS  # the chat template's start and the context
    for sp in (
        SamplingParams(temperature=0.0, max_tokens=6, logprobs=True),
        SamplingParams(temperature=0.9, top_k=20, max_tokens=6, seed=4, logprobs=True),
    ):
        out_new, shapes, tokens_new = fed(new, reqs, sp)
        out_old, _, tokens_old = fed(old, reqs, sp)
        for a, b in zip(out_new, out_old):
            assert [c.token_ids for c in a] == [c.token_ids for c in b]
            assert [c.logprobs for c in a] == [pytest.approx(c.logprobs, abs=1e-5) for c in b]
        prefills = [s for s in shapes if s[1] > 1]
        # The unrelated prompt on its own; the common start once; the 3 distinct rests, padded together.
        rests = [len(p) - 1 - common for p in ids[:3]]
        assert prefills == [(1, len(ids[4]) - 1), (1, common), (3, max(rests))]
        assert tokens_new < tokens_old - 2 * common

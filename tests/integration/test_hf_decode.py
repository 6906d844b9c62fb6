"""The HF engine's decode loop (``intrain.engines.hf_decode``): rows that finished leave the batch and
its KV cache, waiting rows take their places, and the outputs are those of a batch that keeps every
row to the end, at any batch size."""

from __future__ import annotations

import itertools

import pytest
import torch

from intrain.engines import Request, SamplingParams, hf_decode
from intrain.engines.hf import HFGenerator


def chat(text: str, n: int = 1) -> Request:
    return Request(messages=[{"role": "user", "content": text}], n=n)


class Probe:
    """Makes EOS likely (rows of a random model then end at scattered steps) and records the shape of
    every input that reaches the embedding layer."""

    def __init__(self, gen: HFGenerator, boost: float):
        self.shapes: list[tuple[int, int]] = []
        eos = gen.eos_token_ids

        def more_eos(module, args, output):
            output.logits[..., eos] += boost
            return output

        self.handles = [
            gen.model.get_input_embeddings().register_forward_hook(
                lambda m, a, o: self.shapes.append(tuple(a[0].shape))
            ),
            gen.model.register_forward_hook(more_eos),
        ]

    def decode_rows(self) -> list[int]:
        """Rows fed at each one-token step."""
        return [rows for rows, columns in self.shapes if columns == 1]

    def remove(self):
        for h in self.handles:
            h.remove()


def run(gen: HFGenerator, requests, sampling, boost: float):
    probe = Probe(gen, boost)
    try:
        return gen.generate(requests, sampling), probe.decode_rows()
    finally:
        probe.remove()


class Fed(Probe):
    """All (rows, columns) fed, prefills included."""

    def all(self) -> list[tuple[int, int]]:
        return list(self.shapes)


def assert_same(rows, others, logprob_tol: float) -> None:
    """The same completions, log-probabilities up to float rounding."""
    assert len(rows) == len(others)
    for a, b in zip(rows, others):
        assert (a.token_ids, a.text, a.finish_reason, a.prompt_tokens) == (
            b.token_ids,
            b.text,
            b.finish_reason,
            b.prompt_tokens,
        )
        assert a.logprobs == pytest.approx(b.logprobs, abs=logprob_tol)


@pytest.fixture()
def gen(tiny_model_dir):
    return HFGenerator.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=16)


SHARED = [chat(f"What is {i} + {2 * i}? Put the answer in a box.", n=4) for i in range(3)] + [
    Request(prompt=f"{i} + {i} =", n=2) for i in range(2)
]
DISTINCT = [chat(f"What is {i} * {i + 3}?") for i in range(16)]  # greedy decodes equal prompts once
# (sampling, EOS boost that spreads a random model's lengths over the budget, requests: 16 rows)
CASES = {
    "sampled": (SamplingParams(temperature=1.0, max_tokens=24, seed=7, logprobs=True), 3.0, SHARED),
    "top-k-p-stop": (
        SamplingParams(temperature=0.7, top_k=20, top_p=0.9, max_tokens=24, seed=8, logprobs=True, stop=("\n", "1")),
        0.5,
        SHARED,
    ),
    "greedy": (SamplingParams(temperature=0, max_tokens=24, seed=0, logprobs=True), 1.0, DISTINCT),
}


@pytest.mark.parametrize("case", CASES)
def test_finished_rows_leave_the_batch_and_the_outputs_stay(gen, case, monkeypatch):
    sampling, boost, requests = CASES[case]
    dropping, fed = run(gen, requests, sampling, boost)
    monkeypatch.setattr(hf_decode, "DROP_SHARE", 2.0)  # finished rows never reach twice the live ones
    keeping, fed_keeping = run(gen, requests, sampling, boost)

    rows = [c for o in dropping for c in o]
    assert len(rows) == 16
    assert len({len(c.token_ids) for c in rows}) >= 3 and "stop" in {c.finish_reason for c in rows}
    assert_same(rows, [c for o in keeping for c in o], logprob_tol=1e-5)
    assert all(c.logprobs is not None and len(c.logprobs) == len(c.token_ids) for c in rows)

    # Kept: every row runs to the longest one. Dropped: the batch shrinks, never grows, and does
    # the same steps with fewer row-steps.
    assert len(set(fed_keeping)) == 1
    assert fed == sorted(fed, reverse=True) and fed[-1] < fed[0] == fed_keeping[0]
    assert len(fed) == len(fed_keeping) and sum(fed) < sum(fed_keeping)


def test_a_row_leaves_once_a_quarter_of_the_batch_is_done(gen, monkeypatch):
    """The batch drops finished rows only once they are DROP_SHARE of it: a drop copies the cache."""
    _, fed = run(gen, [chat("Count to ten.", n=16)], CASES["sampled"][0], boost=3.0)
    assert fed[-1] < fed[0]
    for before, after in itertools.pairwise(fed):
        assert after == before or before - after >= hf_decode.DROP_SHARE * before


# 24 distinct prompts of different lengths, and sampled rows of a few shared ones: more rows than a batch.
STREAM = [chat("What is " + " + ".join(str(k) for k in range(i % 7 + 2)) + "?") for i in range(24)] + [
    Request(prompt=f"{i} * {i} =", n=3) for i in range(4)
]


@pytest.mark.parametrize(
    ("sampling", "boost"),
    [
        (SamplingParams(temperature=1.0, max_tokens=20, seed=5, logprobs=True), 2.0),
        (SamplingParams(temperature=0, max_tokens=20, seed=0, logprobs=True), 1.0),
    ],
    ids=["sampled", "greedy"],
)
def test_waiting_rows_join_the_batch_and_the_outputs_do_not_depend_on_batch_size(gen, sampling, boost):
    """Rows enter the batch as others leave, their caches joined to the batch's (left-padded to a
    common width); each sampled row draws from its own stream, so any batch size gives the same
    completions (logprobs up to float rounding)."""
    small = HFGenerator(gen.model, gen.tokenizer, batch_size=4)
    probe = Fed(small, boost=boost)
    try:
        streamed = small.generate(STREAM, sampling)
        fed = probe.all()
    finally:
        probe.remove()
    whole, _ = run(HFGenerator(gen.model, gen.tokenizer, batch_size=64), STREAM, sampling, boost=boost)

    rows = [c for o in streamed for c in o]
    assert len(rows) == 36 and len({len(c.token_ids) for c in rows}) >= 3
    assert_same(rows, [c for o in whole for c in o], logprob_tol=1e-4)
    # Never more than 4 rows in a step; some prefill ran while other rows were mid-decode (the step
    # after it feeds more rows than it prefilled).
    decode_steps = [r for r, c in fed if c == 1]
    assert max(decode_steps) <= 4
    joins = [(r, nxt) for (r, c), (nxt, c2) in itertools.pairwise(fed) if c > 1 and c2 == 1 and nxt > r]
    assert joins


def test_sampled_rows_of_one_prompt_differ_and_repeat_for_a_seed(gen):
    """Each (request, sample) has its own stream: the samples of a request differ from one another,
    and a request's samples are the same whether it comes alone or after other requests."""
    sp = SamplingParams(temperature=1.0, max_tokens=12, seed=3)
    alone = gen.generate([chat("Name three colours.", n=4)], sp)
    again = gen.generate([chat("Name three colours.", n=4)], sp)
    assert alone == again
    assert len({tuple(c.token_ids) for c in alone[0]}) > 1
    with_others = gen.generate([chat("Name three colours.", n=4), chat("Name a fruit.", n=4)], sp)
    assert [c.token_ids for c in with_others[0]] == [c.token_ids for c in alone[0]]


def test_the_split_lm_head_is_used_only_where_it_gives_the_models_logits(gen):
    """On a CPU the engine multiplies the body's hidden state by the head's weight itself; a model whose
    forward does more than that (here: logits doubled, as a capping or scaling model would) keeps its own."""
    assert hf_decode._plain_head(gen.model) is True
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        expected = gen.model(input_ids=ids).logits[:, -1, :]
        split = hf_decode._logits_step(gen.model)(ids, torch.ones_like(ids), torch.arange(4)[None], None)
    assert torch.allclose(split, expected, atol=1e-5)

    class Doubled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.base_model = inner, inner.base_model

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.logits = out.logits * 2
            return out

    doubled = Doubled(gen.model)
    assert hf_decode._plain_head(doubled) is False
    with torch.inference_mode():
        got = hf_decode._logits_step(doubled)(ids, torch.ones_like(ids), torch.arange(4)[None], None)
    assert torch.allclose(got, 2 * expected, atol=1e-5)

"""The HF engine's decode loop: a stream of rows over a KV cache that grows in place, from which
finished rows leave and into which waiting rows enter.

``generate`` decodes a fixed batch until its longest row ends. With sampled lengths from a few tokens
to ``max_tokens``, the tail of every batch runs with a handful of rows, and on a CPU a step of 8 rows
costs two thirds of a step of 48. Here the engine hands over all its rows at once (sorted by prompt
length); the loop keeps up to ``batch_size`` of them in flight. Once finished rows are a quarter of
the batch they leave it (a drop copies the cache, so not after every row), and waiting rows take
their places: their prompts are prefilled on their own (each distinct prompt once), then their
caches join the batch's, aligned on the right, and the next step runs old and new rows together.

The cache of a full-attention layer lives in a buffer with room to grow (``_GrowingLayer``): a step
writes its column in place, where transformers' ``DynamicLayer`` concatenates, copying the whole
cache at every step (a fifth of a decode step at batch 48 on a CPU).

Sampled rows draw from their own random streams (``streams``: one seed per row), one uniform per
token, so a row's sample does not depend on which rows share its batch, when it entered, or when the
others finish: the same prompt and seed give the same sample at any batch size, up to float rounding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from intrain.engines.base import SamplingParams

# Drop finished rows once they are at least this share of the rows in the batch; admit waiting rows
# once at least this share of the batch's slots is free.
DROP_SHARE = 0.25


@dataclass
class DecodedRow:
    token_ids: list[int]  # generated ids; the EOS token included when the row ended on it
    logprobs: list[float] | None
    ended_on_eos: bool
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


def draw(logits: torch.Tensor, sampling: SamplingParams, u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's next token and its log-probability under the distribution it was drawn from.

    Greedy: the argmax, under the model's distribution (zeros unless `sampling.logprobs`).
    Sampled: temperature, then top-k (the
    candidates are cut first; a full sort only when top-p runs without top-k), then top-p
    (transformers' rule: a candidate stays while the mass before it is below top_p), then the
    uniform ``u`` (rows, 1) picks by inverse CDF. transformers' own chain (``torch.multinomial`` over
    the whole vocabulary after sorting all of it) took a fifth of an eval's time on a CPU.
    """
    logits = logits.float()
    if sampling.greedy or u is None:
        token = logits.argmax(-1, keepdim=True)
        if not sampling.logprobs:  # a full-vocabulary log_softmax per step that nothing would read
            return token.squeeze(1), torch.zeros(token.shape[0], device=token.device)
        return token.squeeze(1), torch.log_softmax(logits, -1).gather(-1, token).squeeze(1)
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    vocab = logits.shape[-1]
    candidates: torch.Tensor | None = None  # None: every token, in vocabulary order
    if 0 < sampling.top_k < vocab:
        logits, candidates = logits.topk(sampling.top_k, dim=-1)
    elif sampling.top_p < 1.0:
        logits, candidates = logits.sort(dim=-1, descending=True)
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:  # candidates are sorted by probability here
        mass_before = probs.cumsum(-1) - probs
        probs = probs.masked_fill(mass_before >= sampling.top_p, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    cdf = probs.cumsum(-1)
    pick = torch.searchsorted(cdf, u.to(cdf.dtype) * cdf[:, -1:], right=True).clamp_(max=cdf.shape[-1] - 1)
    # Never land on a zero-probability slot (u at the very end of a row's mass, rounding).
    pick = torch.where(probs.gather(-1, pick) > 0, pick, probs.argmax(-1, keepdim=True))
    logprob = probs.gather(-1, pick).squeeze(1).log()
    token = pick if candidates is None else candidates.gather(-1, pick)
    return token.squeeze(1), logprob


class _GrowingLayer(DynamicLayer):
    """A full-attention layer's keys and values in a buffer with ``room`` spare columns: a step writes
    its column in place and the layer's ``keys``/``values`` are views of the columns in use."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room
        self.length = 0

    def set(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Hold these keys and values (rows, heads, columns, dim) in a fresh buffer."""
        self.length = keys.shape[-2]
        shape = (*keys.shape[:-2], self.length + self.room, keys.shape[-1])
        self.key_buffer, self.value_buffer = keys.new_empty(shape), values.new_empty(shape)
        self.key_buffer[..., : self.length, :] = keys
        self.value_buffer[..., : self.length, :] = values
        self.device, self.is_initialized = keys.device, True
        self._view()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.set(key_states, value_states)
            return self.keys, self.values
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            self.room = max(self.room, self.length, key_states.shape[-2])  # out of room: double
            self.set(*self.columns())
        self.key_buffer[..., self.length : end, :] = key_states
        self.value_buffer[..., self.length : end, :] = value_states
        self.length = end
        self._view()
        return self.keys, self.values

    def _view(self) -> None:
        self.keys, self.values = self.columns()

    def columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values in use (views of the buffers)."""
        return self.key_buffer[..., : self.length, :], self.value_buffer[..., : self.length, :]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            keys, values = self.columns()
            self.set(keys[indices], values[indices])

    def reset(self) -> None:
        self.length = 0
        super().reset()


def new_cache(model: Any, room: int) -> DynamicCache:
    """A cache for ``model`` whose full-attention layers grow in place (the others as transformers has them)."""
    cache = DynamicCache(config=model.config)
    cache.layers = [_GrowingLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _growing(cache: DynamicCache) -> bool:
    return all(isinstance(layer, _GrowingLayer) for layer in cache.layers)


@dataclass
class _Batch:
    """The rows in flight: their cache (``mask`` covers its columns), what the next step feeds them
    (``feed``/``feed_mask``/``feed_positions``, one column after the first step) and their uniforms."""

    rows: list[int]  # the prompt index of each row
    finished: list[bool]
    cache: DynamicCache
    mask: torch.Tensor  # (rows, cache columns)
    feed: torch.Tensor  # (rows, columns fed next)
    feed_mask: torch.Tensor
    feed_positions: torch.Tensor
    uniforms: torch.Tensor | None  # (rows, max_tokens): row r's k-th token is drawn with uniforms[r, k]

    def select(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.feed = self.mask[index], self.feed[index]
        self.feed_mask, self.feed_positions = self.feed_mask[index], self.feed_positions[index]
        if self.uniforms is not None:
            self.uniforms = self.uniforms[index]
        self.rows, self.finished = [self.rows[b] for b in keep], [self.finished[b] for b in keep]


def decode_stream(
    model: Any,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingParams,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    batch_size: int,
    streams: Sequence[int] | None = None,
    share_prefix: bool = True,
    stopped: Callable[[list[int]], bool] | None = None,
) -> Iterator[tuple[int, DecodedRow]]:
    """Decode every prompt, admitted in the order given, yielding ``(prompt index, row)`` as each row
    ends (EOS, ``stopped(ids)`` true, or ``max_tokens``).

    ``streams``: the seed of each prompt's random stream (sampled decoding needs them).
    ``share_prefix``: rows that enter together with the same prompt prefill it once (all but its last
    token, which the first step feeds) and continue from copies of that cache.
    """
    if not sampling.greedy and (streams is None or len(streams) != len(prompts)):
        raise ValueError("sampled decoding needs one stream seed per prompt")
    device = next(model.parameters()).device
    next_logits = _logits_step(model)
    eos = set(int(t) for t in eos_token_ids)
    pending = deque(range(len(prompts)))
    out: dict[int, DecodedRow] = {}
    batch: _Batch | None = None
    while pending or batch is not None:
        free = batch_size - (0 if batch is None else len(batch.rows) - sum(batch.finished))
        if pending and (batch is None or (_growing(batch.cache) and free >= DROP_SHARE * batch_size)):
            entering = [pending.popleft() for _ in range(min(free, len(pending)))]
            batch = _admit(model, batch, entering, prompts, sampling, streams, pad_token_id, share_prefix, device)
            for row in entering:
                out[row] = DecodedRow([], [] if sampling.logprobs else None, False, "length")
        assert batch is not None
        batch.mask = torch.cat([batch.mask, batch.feed_mask], dim=1)
        logits = next_logits(batch.feed, batch.mask, batch.feed_positions, batch.cache)
        u = None
        if batch.uniforms is not None:
            drawn = torch.tensor([min(len(out[r].token_ids), sampling.max_tokens - 1) for r in batch.rows])
            u = batch.uniforms.gather(1, drawn[:, None].to(batch.uniforms.device))
        token, logprob = draw(logits, sampling, u)
        tokens = token.tolist()
        logprobs = logprob.tolist() if sampling.logprobs else None
        for b, row in enumerate(batch.rows):
            if batch.finished[b]:
                continue
            decoded = out[row]
            decoded.token_ids.append(tokens[b])
            if decoded.logprobs is not None and logprobs is not None:
                decoded.logprobs.append(logprobs[b])
            if tokens[b] in eos:
                decoded.ended_on_eos, decoded.finish_reason = True, "stop"
            elif stopped is not None and stopped(decoded.token_ids):
                decoded.finish_reason = "stop"
            elif len(decoded.token_ids) < sampling.max_tokens:
                continue
            batch.finished[b] = True
            yield row, decoded
        # Rows that finished but stay in the batch are fed padding; nothing reads their outputs.
        still = torch.tensor([not f for f in batch.finished], device=device)
        batch.feed = torch.where(still, token, torch.full_like(token, pad_token_id))[:, None]
        batch.feed_positions = batch.feed_positions[:, -1:] + 1
        batch.feed_mask = batch.mask.new_ones((len(batch.rows), 1))
        done = sum(batch.finished)
        if done == len(batch.rows):
            batch = None
        elif done and done >= DROP_SHARE * len(batch.rows) and _growing(batch.cache):
            batch.select([b for b, f in enumerate(batch.finished) if not f])


def _logits_step(model: Any) -> Callable[..., torch.Tensor]:
    """``(ids, mask, positions, cache) -> logits of each row's last position``.

    On a CPU the LM head runs as ``W @ h.T``: MKL multiplies the (vocabulary x hidden) weight by a few
    hidden states about 1.5x faster in that layout than as ``h @ W.T`` (``F.linear``), and at small
    batches the head is a third of a decode step. Used only where the model's logits are exactly its
    body's last hidden state times its head's weight (no bias, scaling or capping), checked once per
    model, and nothing hooks the model's forward; otherwise the model's own forward.
    """

    def whole(ids, mask, positions, cache):
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
        )
        return out.logits[:, -1, :]

    # Hooks on the model's forward (a caller's logits processing) would be skipped by the split path.
    if model._forward_hooks or model._forward_pre_hooks or not _plain_head(model):
        return whole
    body, weight = model.base_model, model.get_output_embeddings().weight

    def split(ids, mask, positions, cache):
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        return torch.mm(weight, hidden.last_hidden_state[:, -1, :].t()).t()

    return split


def _plain_head(model: Any) -> bool:
    checked = getattr(model, "_intrain_plain_head", None)
    if checked is not None:
        return checked
    head = model.get_output_embeddings()
    plain = (
        next(model.parameters()).device.type == "cpu"
        and model.base_model is not model
        and type(head) is torch.nn.Linear
        and head.bias is None
    )
    if plain:
        ids = torch.tensor([[1, 2, 3]])
        with torch.inference_mode():
            expected = model(input_ids=ids, logits_to_keep=1).logits[:, -1, :]
            hidden = model.base_model(input_ids=ids).last_hidden_state[:, -1, :]
            plain = bool(torch.allclose(torch.mm(head.weight, hidden.t()).t(), expected, atol=1e-4, rtol=1e-4))
    model._intrain_plain_head = plain
    return plain


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of the prompts padded on the left to the longest, on ``device``."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def _admit(
    model: Any,
    batch: _Batch | None,
    entering: list[int],
    prompts: Sequence[Sequence[int]],
    sampling: SamplingParams,
    streams: Sequence[int] | None,
    pad_token_id: int,
    share_prefix: bool,
    device: Any,
) -> _Batch:
    """The batch with ``entering`` rows added: their prompts prefilled but the last token, their caches
    joined to the batch's on the right.

    With ``share_prefix``, each distinct prompt is prefilled once, and prompts that start with the same
    tokens (attempts at one problem under one proposer prompt, continuations of one attempt) are
    prefilled as a group (`_prefix_groups`): the common part once, then each prompt's rest against a
    copy of its cache, padded only among the group's members."""
    # Linear-attention (SSM) or sliding-window layers: their states are not copied between rows here.
    if share_prefix and _growing(new_cache(model, room=0)):
        parts = _prefix_groups(entering, prompts)
        if len(parts) > 1 or parts[0][1] > 0 or len({tuple(prompts[r]) for r in entering}) < len(entering):
            prefilled = [
                _prefill(model, rows, prompts, shared, sampling, streams, pad_token_id, device)
                for rows, shared in parts
            ]
            return _join(([] if batch is None else [batch]) + prefilled)
    ids, mask = left_pad([prompts[r] for r in entering], pad_token_id, device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as `generate` derives them
    uniforms = _uniforms(entering, sampling, streams, device)
    cache = new_cache(model, room=sampling.max_tokens + 1)
    if batch is None or ids.shape[1] < 2:
        # A batch of its own: the first step is the whole prefill.
        entered = _Batch(list(entering), [False] * len(entering), cache, mask[:, :0], ids, mask, positions, uniforms)
        return entered if batch is None else _join([batch, entered])
    _forward_cache(model, ids[:, :-1], mask[:, :-1], positions[:, :-1], cache)
    entered = _Batch(
        list(entering),
        [False] * len(entering),
        cache,
        mask[:, :-1],
        ids[:, -1:],
        mask[:, -1:],
        positions[:, -1:],
        uniforms,
    )
    return _join([batch, entered])


# A group shares at least this many prompt tokens; shorter common starts are not worth a forward call.
MIN_SHARED_TOKENS = 16


def _prefix_groups(entering: list[int], prompts: Sequence[Sequence[int]]) -> list[tuple[list[int], int]]:
    """``entering`` split into ``(rows, shared)`` parts: rows whose prompts start with the same
    ``shared`` tokens (at least MIN_SHARED_TOKENS and short of every member's last token), and one part
    with ``shared`` 0 for the rest. Greedy over the prompts in token order: the next distinct prompt joins
    the open group while the tokens saved, (members - 1) x shared, do not go down."""
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for r in entering:
        by_prompt.setdefault(tuple(prompts[r]), []).append(r)
    groups: list[tuple[list[tuple[int, ...]], int]] = []
    for prompt in sorted(by_prompt):
        if groups:
            members, shared = groups[-1]
            common = min(shared, len(prompt) - 1, _common_length(members[0], prompt))
            if common >= MIN_SHARED_TOKENS and len(members) * common >= (len(members) - 1) * shared:
                groups[-1] = (members + [prompt], common)
                continue
        groups.append(([prompt], len(prompt) - 1))
    rest = [r for members, _ in groups if len(members) == 1 for r in by_prompt[members[0]]]
    parts = [([r for p in members for r in by_prompt[p]], shared) for members, shared in groups if len(members) > 1]
    return ([(rest, 0)] if rest else []) + parts


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _prefill(
    model: Any,
    rows: list[int],
    prompts: Sequence[Sequence[int]],
    shared: int,
    sampling: SamplingParams,
    streams: Sequence[int] | None,
    pad_token_id: int,
    device: Any,
) -> _Batch:
    """``rows`` as a batch of their own with every prompt prefilled but its last token: the first
    ``shared`` tokens (common to all) once, then each distinct prompt's rest, left-padded after them."""
    distinct: dict[tuple[int, ...], int] = {}
    which = [distinct.setdefault(tuple(prompts[r]), len(distinct)) for r in rows]
    rests = [p[shared:-1] for p in distinct]
    cache = new_cache(model, room=sampling.max_tokens + 1 + max(len(rest) for rest in rests))
    mask = torch.zeros((len(distinct), 0), dtype=torch.long, device=device)
    if shared:
        first = torch.tensor([next(iter(distinct))[:shared]], device=device)
        _forward_cache(model, first, None, torch.arange(shared, device=device)[None], cache)
        cache.batch_select_indices(torch.zeros(len(distinct), dtype=torch.long, device=device))
        mask = torch.ones((len(distinct), shared), dtype=torch.long, device=device)
    if any(rests):
        ids, rest_mask = left_pad(rests, pad_token_id, device)
        mask = torch.cat([mask, rest_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        _forward_cache(model, ids, mask, positions[:, shared:], cache)
    if len(distinct) < len(rows):
        cache.batch_select_indices(torch.tensor(which, device=device))
    last = [[prompts[r][-1]] for r in rows]
    return _Batch(
        list(rows),
        [False] * len(rows),
        cache,
        mask[which],
        torch.tensor(last, dtype=torch.long, device=device),
        torch.ones((len(rows), 1), dtype=torch.long, device=device),
        torch.tensor([[len(prompts[r]) - 1] for r in rows], dtype=torch.long, device=device),
        _uniforms(rows, sampling, streams, device),
    )


def _forward_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache) -> None:
    """Run ``ids`` through the model's body into ``cache`` (no LM head: nothing reads these logits)."""
    body = model.base_model
    head_kwargs = {"logits_to_keep": 1} if body is model else {}
    body(
        input_ids=ids,
        # An all-ones mask is dropped, as `generate` does for an unpadded batch (same attention path).
        attention_mask=None if mask is None or bool(mask.all()) else mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        **head_kwargs,
    )


def _uniforms(rows: list[int], sampling: SamplingParams, streams: Sequence[int] | None, device: Any):
    """Each row's ``max_tokens`` uniforms from its own stream (None for greedy decoding)."""
    if sampling.greedy:
        return None
    assert streams is not None
    return torch.stack(
        [torch.rand(sampling.max_tokens, generator=torch.Generator().manual_seed(streams[r])) for r in rows]
    ).to(device)


def _join(batches: list[_Batch]) -> _Batch:
    """One batch of the unfinished rows of ``batches``, in order: their caches aligned on the right
    (zero columns, masked, pad the shorter) and cut of columns no row attends to. One copy of every
    cache, however many batches join."""
    if len(batches) == 1:
        return batches[0]
    for batch in batches:
        batch.select([b for b, f in enumerate(batch.finished) if not f])
    width = max(batch.mask.shape[1] for batch in batches)
    mask = torch.cat([F.pad(batch.mask, (width - batch.mask.shape[1], 0)) for batch in batches])
    used = mask.any(0).nonzero()
    start = int(used[0]) if len(used) else width
    first = batches[0].cache
    for i, layers in enumerate(zip(*(batch.cache.layers for batch in batches))):
        assert all(isinstance(layer, _GrowingLayer) for layer in layers)
        filled = [layer for layer in layers if layer.is_initialized]
        if not filled:
            continue  # one-token prompts everywhere: nothing was prefilled
        like = filled[0].columns()[0]
        keys, values = [], []
        for layer, batch in zip(layers, batches):
            if layer.is_initialized:
                k, v = layer.columns()
            else:  # one-token prompts: nothing was prefilled
                k = v = like.new_zeros((len(batch.rows), like.shape[1], 0, like.shape[-1]))
            pad = (0, 0, width - k.shape[-2], 0)
            keys.append(F.pad(k, pad)[..., start:, :])
            values.append(F.pad(v, pad)[..., start:, :])
        target = first.layers[i]
        assert isinstance(target, _GrowingLayer)
        target.set(torch.cat(keys), torch.cat(values))
    uniforms = None
    if all(batch.uniforms is not None for batch in batches):
        uniforms = torch.cat([batch.uniforms for batch in batches])  # type: ignore[misc]
    return _Batch(
        [row for batch in batches for row in batch.rows],
        [False] * sum(len(batch.rows) for batch in batches),
        first,
        mask[:, start:],
        torch.cat([batch.feed for batch in batches]),
        torch.cat([batch.feed_mask for batch in batches]),
        torch.cat([batch.feed_positions for batch in batches]),
        uniforms,
    )

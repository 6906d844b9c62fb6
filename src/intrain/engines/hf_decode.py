"""The HF engine's decode loop over a dynamic KV cache, from which finished rows leave.

``generate`` keeps every row of a batch until the last one ends, feeding finished rows padding. With
sampled lengths from a few tokens to ``max_tokens``, a batch runs as long as its longest row, and on a
CPU a finished row's step costs what a live one's does: in the demo's eval about half of the
row-steps went to finished rows. Here finished rows are dropped from the batch and its KV cache once
they make up a quarter of it (a drop copies the cache, so not after every row).

Each step draws one uniform per row of the batch as it started, whichever rows are left, so a row's
draws do not depend on when the others finish: the samples are the ones ``generate`` with the
engine's sampler draws from the same stream, up to float rounding in a smaller batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from intrain.engines.base import SamplingParams

# Drop finished rows once they are at least this share of the rows still in the batch.
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


def decode_rows(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sampling: SamplingParams,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    stopped: Callable[[list[int]], bool] | None = None,
    cache: DynamicCache | None = None,
) -> list[DecodedRow]:
    """Decode left-padded rows until each ends (EOS, ``stopped(ids)`` true, or ``max_tokens``).

    ``cache``: the KV cache of every column but the last (a shared prefill); None prefills all.
    """
    rows, device = input_ids.shape[0], input_ids.device
    positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    if cache is None:
        cache = DynamicCache(config=model.config)
        feed, feed_positions = input_ids, positions
    else:
        feed, feed_positions = input_ids[:, -1:], positions[:, -1:]
    # Linear-attention (SSM) layers keep a state per row that an index copy may not carry over.
    can_drop = not any(getattr(cache, "is_linear", ()))
    next_position = positions[:, -1] + 1
    mask = attention_mask
    live = list(range(rows))  # the original row of each row still in the batch
    finished = [False] * rows  # per row still in the batch
    out = [DecodedRow([], [] if sampling.logprobs else None, False, "length") for _ in range(rows)]
    eos = set(int(t) for t in eos_token_ids)
    for _ in range(sampling.max_tokens):
        logits = model(
            input_ids=feed,
            attention_mask=mask,
            position_ids=feed_positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        u = None
        if not sampling.greedy:
            u = torch.rand((rows, 1), device=device, dtype=torch.float32)[live]
        token, logprob = draw(logits, sampling, u)
        tokens = token.tolist()
        logprobs = logprob.tolist() if sampling.logprobs else None
        for b, row in enumerate(live):
            if finished[b]:
                continue
            decoded = out[row]
            decoded.token_ids.append(tokens[b])
            if decoded.logprobs is not None and logprobs is not None:
                decoded.logprobs.append(logprobs[b])
            if tokens[b] in eos:
                decoded.ended_on_eos, decoded.finish_reason, finished[b] = True, "stop", True
            elif stopped is not None and stopped(decoded.token_ids):
                decoded.finish_reason, finished[b] = "stop", True
            elif len(decoded.token_ids) == sampling.max_tokens:
                finished[b] = True
        if all(finished):
            break
        done = sum(finished)
        if can_drop and done and done >= DROP_SHARE * len(live):
            keep = [b for b, f in enumerate(finished) if not f]
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, token, next_position = mask[index], token[index], next_position[index]
            live, finished = [live[b] for b in keep], [False] * len(keep)
        # Rows that finished but stay in the batch are fed padding; nothing reads their outputs.
        still = torch.tensor([not f for f in finished], device=device)
        feed = torch.where(still, token, torch.full_like(token, pad_token_id))[:, None]
        feed_positions = next_position[:, None]
        next_position = next_position + 1
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
    return out

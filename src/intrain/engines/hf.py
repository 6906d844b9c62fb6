"""A transformers causal LM as a :class:`~intrain.engines.base.Generator` (CPU or CUDA).

Requests are expanded to ``n`` sequences each. On the dynamic-cache path (CPU, and CUDA without
static cache) all of them go through one decode stream (:mod:`intrain.engines.hf_decode`) with up to
``batch_size`` rows in flight, in prompt-token order: finished rows leave, waiting rows enter, rows
entering together with the same prompt (the ``n`` samples of a request, or identical requests)
prefill it once, and prompts that start alike (one problem's attempts under the proposer prompt)
prefill their common start once (``HFGenerator.share_prefix``). Fixed batches are sorted by prompt
length, so that rows decoding together waste little padding. Sample ``j`` of a request draws from
its own random stream, seeded ``request seed + j`` (``Request.seed``, else one derived from the call's
seed and the request's position), so it does not depend on batch size or batch mates. On CUDA, fixed
batches go through ``generate`` with a compiled static cache. The sampling chain is built here rather
than taken from the model's ``generation_config``, so a checkpoint's defaults (``top_k=20``,
``repetition_penalty`` ...) never leak into a run: ``SamplingParams`` is the whole story. The same
call (same requests, same params, same seed) returns the same outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from intrain.engines.base import Completion, ProgressFn, Request, SamplingParams, render_ids, request_seed
from intrain.engines.hf_decode import DecodedRow, decode_stream, draw, left_pad


class HFGenerator:
    """Generate with a loaded transformers causal LM.

    ``chat_template_kwargs`` (optional) are passed to the chat template, e.g. ``{"enable_thinking": False}``.

    ``share_prefix`` (default on): rows entering the decode stream together with identical prompts
    share one prefill, and distinct prompts that start with the same tokens prefill that start once
    (`hf_decode._prefix_groups`). With sampling, all but the prompt's last token run through the model
    once per distinct prompt, the KV cache is copied to every row that has that prompt, and decoding
    continues from it (it only feeds the last prompt token). Greedy rows with identical prompts would
    decode identically, so each distinct prompt is decoded once and its completion copied. Off, every row is
    prefilled (and decoded) on its own; the switch exists to measure the difference
    (``bench/bench_prefix.py``). Either way each row draws from its own stream, so the samples agree
    unless float rounding (the prompt's last token now runs as a one-token step) moves a draw across
    a boundary; log-probabilities agree to ~1e-6.

    ``static_cache`` (``load``'s default: on when the model is on CUDA): decode with a preallocated
    static KV cache, which transformers compiles (CUDA graphs) on a GPU, where a small model's decode
    step is bound by per-kernel launch overhead rather than by the GPU. Sampled rows then skip the
    shared prefill (it builds a dynamic cache): on a GPU, prefill is cheap next to the decode steps the
    compilation saves. The first batch of each new shape pays the compilation. Sampled rows there draw
    from one stream for the whole call, so their samples depend on the batch layout.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 16,
        chat_template_kwargs: dict | None = None,
        share_prefix: bool = True,
        static_cache: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # A PEFT model (GRPO under model.train_adapter) injects its LoRA layers into the transformers
        # model it wraps; the engine drives that one, whose body and head it reads directly.
        self.model = model.get_base_model() if _is_peft_model(model) else model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.share_prefix = share_prefix
        self.static_cache = static_cache
        self.model.eval()
        self.eos_token_ids = _eos_ids(model, tokenizer)
        if not self.eos_token_ids:
            raise ValueError("neither the tokenizer nor the generation config names an eos token")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = getattr(model.generation_config, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_ids[0]

    @classmethod
    def load(
        cls,
        path: str,
        device: str = "auto",
        dtype: str = "auto",
        adapter: str | None = None,
        batch_size: int = 16,
        chat_template_kwargs: dict | None = None,
        share_prefix: bool = True,
        static_cache: bool | None = None,
    ) -> HFGenerator:
        """Load a model spec (folder, hub id or ``"embedded:smollm2"``) via :mod:`intrain.models`.
        ``static_cache=None``: on when the model landed on a CUDA device."""
        from intrain.models import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(path, device=device, dtype=dtype, adapter=adapter)
        if static_cache is None:
            static_cache = next(model.parameters()).device.type == "cuda"
        return cls(
            model,
            tok,
            batch_size=batch_size,
            chat_template_kwargs=chat_template_kwargs,
            share_prefix=share_prefix,
            static_cache=static_cache,
        )

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def generate(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        requests = list(requests)
        prompts = [render_ids(self.tokenizer, r, self.chat_template_kwargs) for r in requests]
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"request {i} renders to an empty prompt; there is nothing to condition on")
        # One entry per sequence to decode: (request index, sample index), sorted (stably: ties keep
        # input order) so that rows entering the stream together share what can be shared: prompts in
        # token order put those that start alike side by side; fixed batches go by length (padding).
        # Results go back by index.
        seqs = [(ri, j) for ri, r in enumerate(requests) for j in range(r.n)]
        if self.share_prefix and not self.static_cache:
            order = sorted(range(len(seqs)), key=lambda k: prompts[seqs[k][0]])
        else:
            order = sorted(range(len(seqs)), key=lambda k: len(prompts[seqs[k][0]]))
        results: list[list[Completion | None]] = [[None] * r.n for r in requests]

        device = self.device
        devices = [device] if device.type == "cuda" else []
        # fork_rng: seed our own stream without disturbing the caller's global RNG state.
        with (
            torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"),
            torch.inference_mode(),
            self._clean_generation_config(),
        ):
            torch.random.default_generator.manual_seed(sampling.seed)
            if devices:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(sampling.seed)
            if self.static_cache:
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start : start + self.batch_size]
                    completions = self._static_batch([prompts[seqs[k][0]] for k in chunk], sampling)
                    for k, comp in zip(chunk, completions):
                        ri, j = seqs[k]
                        results[ri][j] = comp
                    if on_progress is not None:
                        on_progress(len(chunk), sum(len(c.token_ids) for c in completions))
            else:
                seeds = [request_seed(r, sampling.seed, i) for i, r in enumerate(requests)]
                self._stream(prompts, seeds, seqs, order, sampling, results, on_progress)
        return [list(r) for r in results]  # type: ignore[arg-type]

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _clean_generation_config(self):
        """Swap in a bare generation config for the duration of a call.

        ``generate`` fills every unset field of the config it is given from
        ``model.generation_config`` (transformers 5.x), so a checkpoint's sampling defaults would
        otherwise apply silently. Only the special token ids survive.
        """
        original = self.model.generation_config
        clean = GenerationConfig(
            bos_token_id=getattr(original, "bos_token_id", None),
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        self.model.generation_config = clean
        try:
            yield
        finally:
            self.model.generation_config = original

    def _stream(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        seqs: list[tuple[int, int]],
        order: list[int],
        sampling: SamplingParams,
        results: list[list[Completion | None]],
        on_progress: ProgressFn | None,
    ) -> None:
        """Decode every sequence through one stream (`hf_decode.decode_stream`), in ``order``.

        Greedy decoding is a function of the prompt alone: with ``share_prefix`` each distinct prompt
        is decoded once and its completion copied. Sample ``j`` of a request draws from its own stream,
        seeded ``request_seed + j`` (`base.request_seed`: the request's own seed or one derived from the
        call's seed and the request's position), as vLLM seeds the ``n`` samples of a seeded request.
        """
        if sampling.greedy and self.share_prefix:
            by_prompt: dict[tuple[int, ...], list[int]] = {}
            for k in order:
                by_prompt.setdefault(tuple(prompts[seqs[k][0]]), []).append(k)
            groups = list(by_prompt.values())
        else:
            groups = [[k] for k in order]
        rows = [prompts[seqs[g[0]][0]] for g in groups]
        streams = None
        if not sampling.greedy:
            streams = [seeds[seqs[g[0]][0]] + seqs[g[0]][1] for g in groups]
        decoded = decode_stream(
            self.model,
            rows,
            sampling,
            self.eos_token_ids,
            self.pad_token_id,
            self.batch_size,
            streams=streams,
            share_prefix=self.share_prefix,
            stopped=_stop_check(self.tokenizer, sampling.stop) if sampling.stop else None,
        )
        for u, row in decoded:
            completion = self._completion(row, len(rows[u]), sampling)
            for i, k in enumerate(groups[u]):
                ri, j = seqs[k]
                results[ri][j] = completion if i == 0 else _copy(completion)
            if on_progress is not None:
                on_progress(len(groups[u]), len(row.token_ids) * len(groups[u]))

    def _static_batch(self, batch_prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        """One batch through `generate` with a static cache; greedy rows with the same prompt decoded once."""
        distinct, rows = batch_prompts, list(range(len(batch_prompts)))
        if sampling.greedy and self.share_prefix:
            index: dict[tuple[int, ...], int] = {}
            rows = [index.setdefault(tuple(p), len(index)) for p in batch_prompts]
            distinct = [list(p) for p in index]  # first-seen order, as `rows` numbers them
        decoded = self._decode_static(*left_pad(distinct, self.pad_token_id, self.device), sampling)
        once = [self._completion(row, len(p), sampling) for row, p in zip(decoded, distinct)]
        returned: set[int] = set()
        out = []
        for u in rows:  # the first row with a prompt takes its completion, later ones copies
            out.append(_copy(once[u]) if u in returned else once[u])
            returned.add(u)
        return out

    def _completion(self, row: DecodedRow, prompt_tokens: int, sampling: SamplingParams) -> Completion:
        ids = row.token_ids
        text = self.tokenizer.decode(ids[:-1] if row.ended_on_eos else ids, skip_special_tokens=True)
        finish = row.finish_reason
        if sampling.stop:
            cut = _first_stop(text, sampling.stop)
            if cut is not None:
                text, finish = text[:cut], "stop"
        return Completion(
            text=text,
            token_ids=[int(t) for t in ids],
            finish_reason=finish,
            logprobs=row.logprobs,
            prompt_tokens=prompt_tokens,
        )

    def _decode_static(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampling: SamplingParams
    ) -> list[DecodedRow]:
        """One ``generate`` call with a static KV cache (compiled on CUDA); rows stay to the end."""
        width = input_ids.shape[1]
        processors = LogitsProcessorList()
        capture: _LogprobCapture | _Sampler | None = None
        if sampling.greedy:
            capture = _LogprobCapture() if sampling.logprobs else None
            if capture is not None:
                processors.append(capture)
        else:
            # Our sampler draws the token and leaves only it finite; `generate` then runs greedy and
            # takes it (see _Sampler for why).
            capture = _Sampler(sampling)
            processors.append(capture)
        stopper = _StopStrings(self.tokenizer, sampling.stop, width) if sampling.stop else None
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            use_cache=True,
            cache_implementation="static",
        )
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([stopper] if stopper is not None else []),
        )
        if not torch.is_tensor(out):  # a ModelOutput when return_dict_in_generate sneaks in
            out = out.sequences
        token_logprobs = capture.finish(out, width) if capture is not None and sampling.logprobs else None
        lp_list = token_logprobs.tolist() if token_logprobs is not None else None
        eos = set(self.eos_token_ids)
        decoded = []
        for i, ids in enumerate(out[:, width:].tolist()):
            end, finish, ended_on_eos = len(ids), "length", False
            for k, t in enumerate(ids):
                if t in eos:
                    end, finish, ended_on_eos = k + 1, "stop", True
                    break
            if stopper is not None and 0 < stopper.done_at[i] <= end and (stopper.done_at[i] < end or not ended_on_eos):
                end, finish, ended_on_eos = stopper.done_at[i], "stop", False
            logprobs = [float(x) for x in lp_list[i][:end]] if lp_list is not None else None
            decoded.append(DecodedRow(ids[:end], logprobs, ended_on_eos, finish))
        return decoded


def _copy(c: Completion) -> Completion:
    """A completion that shares no list with ``c``: callers may edit their samples independently."""
    return replace(c, token_ids=list(c.token_ids), logprobs=None if c.logprobs is None else list(c.logprobs))


def _is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # no PEFT installed: nothing can be a PEFT model
        return False
    return isinstance(model, PeftModel)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))
    return ids


def _stop_window(stops: Sequence[str]) -> int:
    """Tokens to decode to be sure of holding any stop string, whatever the bytes per token."""
    return 4 * max(len(s.encode("utf-8")) for s in stops) + 8


def _stop_check(tokenizer: Any, stops: Sequence[str]):
    """Does a row's generated text hold a stop string? Only its last few tokens are decoded, so the
    cost does not grow with the completion's length."""
    window = _stop_window(stops)

    def stopped(ids: list[int]) -> bool:
        tail = tokenizer.decode(ids[-window:], skip_special_tokens=True)
        return any(s in tail for s in stops)

    return stopped


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


class _Sampler(LogitsProcessor):
    """`draw` as a logits processor for `generate` (the static-cache path): returns scores where only
    the drawn token is finite, so that greedy `generate` takes it, and records its log-probability."""

    def __init__(self, sampling: SamplingParams) -> None:
        self.sampling = sampling
        self.values: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        u = torch.rand((scores.shape[0], 1), device=scores.device, dtype=torch.float32)
        token, logprob = draw(scores, self.sampling, u)
        self.values.append(logprob)
        chosen = torch.full_like(scores, -torch.inf)
        return chosen.scatter_(-1, token[:, None], 0.0)

    def finish(self, sequences, prompt_width: int):
        if not self.values:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self.values, dim=1).cpu()


class _LogprobCapture(LogitsProcessor):
    """Log-probability of each sampled token under the processed distribution.

    A logits processor placed last: at step t it stores log_softmax of the processed scores; at
    step t+1 (or at the end) it reads off the probability of the token actually chosen. Only one
    step's distribution is held at a time, unlike ``output_scores``.
    """

    def __init__(self) -> None:
        self.prev: torch.Tensor | None = None
        self.values: list[Any] = []

    def __call__(self, input_ids, scores):
        if self.prev is not None:
            self.values.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences, prompt_width: int):
        n_new = sequences.shape[1] - prompt_width
        if self.prev is not None and len(self.values) < n_new:
            self.values.append(self.prev.gather(1, sequences[:, -1:]).squeeze(1))
        self.prev = None
        if not self.values:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self.values, dim=1).cpu()


class _StopStrings(StoppingCriteria):
    """Stopping criterion for stop strings; records when each row first matched.

    Only the last few generated tokens are decoded each step (enough to hold any stop string,
    whatever the bytes-per-token), so the cost does not grow with the completion length.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_width: int):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.prompt_width = prompt_width
        self.window = _stop_window(self.stops)
        self.done_at: list[int] = []

    def __call__(self, input_ids, scores, **kwargs):
        rows, length = input_ids.shape
        if not self.done_at:
            self.done_at = [0] * rows
        n_new = length - self.prompt_width
        start = max(self.prompt_width, length - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:].tolist(), skip_special_tokens=True)
        hit = []
        for i, tail in enumerate(tails):
            matched = any(s in tail for s in self.stops)
            if matched and self.done_at[i] == 0:
                self.done_at[i] = n_new
            hit.append(matched or self.done_at[i] > 0)
        return torch.tensor(hit, dtype=torch.bool, device=input_ids.device)

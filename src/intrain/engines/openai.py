"""Any OpenAI-compatible HTTP server (``vllm serve``, SGLang, a hosted API) as a Generator.

Built on the official ``openai`` client (the ``openai`` extra), which retries connection errors,
timeouts, 408/409/429 and 5xx with exponential backoff and honours ``Retry-After``. Chat requests
go to ``{base_url}/chat/completions``, raw prompts to ``{base_url}/completions``. Two vLLM-server
extensions are used where needed: ``top_k`` (sent only when set) and, for ``continue_final``,
``"continue_final_message": true, "add_generation_prompt": false``. Prompts are rendered by the
server's chat template, so token ids are not available: ``Completion.token_ids == []``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from intrain.engines.base import Completion, EngineError, ProgressFn, Request, SamplingParams, request_seed

_MISSING = "the openai engine needs the 'openai' extra: pip install 'intrain[openai]'"


class OpenAIGenerator:
    """Generate through an OpenAI-compatible server.

    ``api_key_env`` names the environment variable holding the key (sent as a bearer token when
    set; a local vLLM server needs none). ``extra_body`` is merged into every request body (e.g.
    ``{"chat_template_kwargs": {"enable_thinking": False}}`` for a vLLM server).
    """

    tokenizer: Any = None
    _retries = 3  # retries after the first attempt (the openai client's retry policy)

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 600,
        max_concurrency: int = 8,
        extra_body: dict | None = None,
    ):
        try:
            import openai
        except ImportError as exc:
            raise ImportError(_MISSING) from exc
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._openai = openai
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.extra_body = dict(extra_body or {})
        self.tokenizer = None

    def generate(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        requests = list(requests)
        if not requests:
            return []
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        # The client insists on a key; without one, no Authorization header is sent at all.
        client = self._openai.OpenAI(
            base_url=self.base_url, api_key=key or "unused", max_retries=self._retries, timeout=self.timeout_s
        )
        headers = None if key else {"Authorization": self._openai.omit}
        lock = threading.Lock()

        def run(index: int) -> list[Completion]:
            seed = request_seed(requests[index], sampling.seed, index)
            completions, new_tokens = self._one(client, headers, requests[index], sampling, seed)
            if on_progress is not None:
                with lock:  # progress callbacks are not expected to be thread-safe
                    on_progress(len(completions), new_tokens)
            return completions

        workers = min(self.max_concurrency, len(requests))
        with client, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intrain-http") as pool:
            return list(pool.map(run, range(len(requests))))

    # -- internals ---------------------------------------------------------------------------

    def _one(
        self, client: Any, headers: dict | None, request: Request, sampling: SamplingParams, seed: int
    ) -> tuple[list[Completion], int]:
        """The request's completions and the number of tokens generated for it (from ``usage``)."""
        chat = request.prompt is None
        kwargs: dict[str, Any] = {
            "model": self.model,
            "n": request.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": seed,
            "extra_headers": headers,
        }
        extra: dict[str, Any] = {}
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if sampling.top_k > 0:
            extra["top_k"] = sampling.top_k  # vLLM / SGLang extension
        if chat:
            kwargs["messages"] = request.messages
            if sampling.logprobs:
                kwargs["logprobs"] = True
            if request.continue_final:
                extra["continue_final_message"] = True  # vLLM server extension
                extra["add_generation_prompt"] = False
            create, url = client.chat.completions.create, self.base_url + "/chat/completions"
        else:
            kwargs["prompt"] = request.prompt
            if sampling.logprobs:
                kwargs["logprobs"] = 1
            create, url = client.completions.create, self.base_url + "/completions"
        extra.update(self.extra_body)
        response = self._call(create, url, kwargs, extra)
        try:
            usage = response.usage
            prompt_tokens = int(usage.prompt_tokens or 0) if usage else 0
            choices = sorted(response.choices, key=lambda c: c.index or 0)
            completions = [_completion(c, chat, prompt_tokens) for c in choices]
        except (AttributeError, TypeError, ValueError) as exc:
            raise EngineError(f"unexpected response from {url}: {exc!r}: {str(response)[:500]}") from exc
        if len(completions) != request.n:
            raise EngineError(f"{url} returned {len(completions)} choices, expected n={request.n}")
        new_tokens = usage.completion_tokens if usage else None
        if new_tokens is None:
            new_tokens = sum(len(c.logprobs or ()) for c in completions)
        return completions, int(new_tokens)

    def _call(self, create: Any, url: str, kwargs: dict, extra: dict) -> Any:
        """``create(**kwargs)`` with the client's errors turned into one-line EngineErrors."""
        openai = self._openai
        try:
            return create(**kwargs, extra_body=extra)
        except json.JSONDecodeError as exc:
            raise EngineError(f"request to {url} returned invalid JSON: {exc}") from None
        except openai.APIError as exc:
            tries = int(exc.request.headers.get("x-stainless-retry-count", 0)) + 1  # set by the client
            if isinstance(exc, openai.APIStatusError):
                body = exc.body
                detail = body.get("message") if isinstance(body, dict) else body
                problem = f"HTTP {exc.status_code}: {str(detail or exc.message)[:500]}"
            elif isinstance(exc, openai.APITimeoutError):
                problem = f"no answer within {self.timeout_s:g} s"
            elif isinstance(exc, openai.APIConnectionError) and exc.__cause__ is not None:
                problem = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
            else:
                problem = f"{type(exc).__name__}: {exc}"
            attempts = f" after {tries} attempts" if tries > 1 else ""
            raise EngineError(f"request to {url} failed{attempts}: {problem}") from None


def _completion(choice: Any, chat: bool, prompt_tokens: int) -> Completion:
    lp = choice.logprobs
    if chat:
        text = choice.message.content or ""
        logprobs = [float(t.logprob) for t in lp.content or ()] if lp else None
    else:
        text = choice.text or ""
        logprobs = [float(x) for x in lp.token_logprobs or () if x is not None] if lp else None
    finish = "length" if choice.finish_reason == "length" else "stop"
    return Completion(text=text, token_ids=[], finish_reason=finish, logprobs=logprobs, prompt_tokens=prompt_tokens)

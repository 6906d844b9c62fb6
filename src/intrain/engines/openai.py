"""Any OpenAI-compatible HTTP server (``vllm serve``, SGLang, a hosted API) as a Generator.

Standard library only (urllib + a thread pool). Chat requests go to ``{base_url}/chat/completions``,
raw prompts to ``{base_url}/completions``. Two vLLM-server extensions are used where needed:
``top_k`` (sent only when set) and, for ``continue_final``,
``"continue_final_message": true, "add_generation_prompt": false``. Prompts are rendered by the
server's chat template, so token ids are not available: ``Completion.token_ids == []``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from intrain.engines.base import Completion, EngineError, ProgressFn, Request, SamplingParams, derive_seed


class OpenAIGenerator:
    """Generate through an OpenAI-compatible server.

    ``api_key_env`` names the environment variable holding the key (sent as a bearer token when
    set; a local vLLM server needs none). ``extra_body`` is merged into every request body (e.g.
    ``{"chat_template_kwargs": {"enable_thinking": False}}`` for a vLLM server).
    """

    tokenizer: Any = None
    _retries = 3  # retries after the first attempt, on connection errors, 429 and 5xx
    _backoff_s = 1.0  # first wait; doubles each retry

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 600,
        max_concurrency: int = 8,
        extra_body: dict | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
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
        lock = threading.Lock()

        def run(index: int) -> list[Completion]:
            completions, new_tokens = self._one(requests[index], sampling, derive_seed(sampling.seed, index))
            if on_progress is not None:
                with lock:  # progress callbacks are not expected to be thread-safe
                    on_progress(len(completions), new_tokens)
            return completions

        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intrain-http") as pool:
            return list(pool.map(run, range(len(requests))))

    # -- internals ---------------------------------------------------------------------------

    def _body(self, request: Request, sampling: SamplingParams, seed: int) -> tuple[str, dict]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": request.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": seed,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k  # vLLM / SGLang extension
        if request.prompt is not None:
            body["prompt"] = request.prompt
            if sampling.logprobs:
                body["logprobs"] = 1
            path = "/completions"
        else:
            body["messages"] = request.messages
            if sampling.logprobs:
                body["logprobs"] = True
            if request.continue_final:
                body["continue_final_message"] = True  # vLLM server extension
                body["add_generation_prompt"] = False
            path = "/chat/completions"
        body.update(self.extra_body)
        return path, body

    def _one(self, request: Request, sampling: SamplingParams, seed: int) -> tuple[list[Completion], int]:
        """The request's completions and the number of tokens generated for it (from ``usage``)."""
        path, body = self._body(request, sampling, seed)
        url = self.base_url + path
        data = self._post(url, body)
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completions = [_parse_choice(c, chat=request.prompt is None, prompt_tokens=prompt_tokens) for c in choices]
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"unexpected response from {url}: {exc!r}: {json.dumps(data)[:500]}") from exc
        if len(completions) != request.n:
            raise EngineError(f"{url} returned {len(completions)} choices, expected n={request.n}")
        new_tokens = usage.get("completion_tokens")
        if new_tokens is None:
            new_tokens = sum(len(c.logprobs or ()) for c in completions)
        return completions, int(new_tokens)

    def _post(self, url: str, body: dict) -> dict:
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last_error = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = _read_error(exc)
                last_error = f"HTTP {exc.code}: {detail}"
                if exc.code == 429 or exc.code >= 500:
                    continue
                raise EngineError(f"request to {url} failed: {last_error}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_error = f"{type(exc).__name__}: {reason}"
                continue
            except json.JSONDecodeError as exc:
                raise EngineError(f"request to {url} returned invalid JSON: {exc}") from None
        raise EngineError(f"request to {url} failed after {self._retries + 1} attempts: {last_error}")


def _read_error(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - best effort for an error message
        return str(exc.reason)
    try:
        msg = json.loads(text).get("error")
        if isinstance(msg, dict):
            msg = msg.get("message")
        if msg:
            return str(msg)[:500]
    except (ValueError, AttributeError):
        pass
    return text[:500] or str(exc.reason)


def _parse_choice(choice: dict, chat: bool, prompt_tokens: int) -> Completion:
    if chat:
        text = (choice.get("message") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    logprobs = None
    lp = choice.get("logprobs")
    if lp:
        if chat:  # {"content": [{"token": ..., "logprob": ...}, ...]}
            logprobs = [float(t["logprob"]) for t in (lp.get("content") or [])]
        else:  # {"tokens": [...], "token_logprobs": [...]}
            logprobs = [float(x) for x in (lp.get("token_logprobs") or []) if x is not None]
    return Completion(text=text, token_ids=[], finish_reason=finish, logprobs=logprobs, prompt_tokens=prompt_tokens)

"""The generation protocol every stage talks to, and the single prompt-rendering function.

Stages build :class:`Request` objects and call ``Generator.generate``; they never import a backend.
:func:`render_ids` is the only place prompts become token ids: every engine (and SFT data
construction) goes through it, so a continued prefix is conditioned on exactly the tokens that
training will see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Request:
    """One prompt. Exactly one of ``messages`` (chat) or ``prompt`` (raw text, no template).

    ``continue_final``: ``messages[-1]`` is an unfinished assistant message that the model continues.
    ``n``: number of samples for this request.
    ``seed``: this request's own seed. Sample ``j`` is drawn as a one-sample request seeded ``seed + j``
    (vLLM's rule for ``n > 1``), whatever the call's seed or the request's position, so a request
    seeded ``s + k`` with ``n = m`` returns samples ``k .. k + m - 1`` of one seeded ``s``. None: derived
    from the call's seed and the request's position (:func:`request_seed`).
    """

    messages: list[dict] | None = None
    prompt: str | None = None
    continue_final: bool = False
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("Request needs exactly one of messages= or prompt=")
        if self.messages is not None and len(self.messages) == 0:
            raise ValueError("Request.messages is empty")
        if self.continue_final:
            if self.messages is None:
                raise ValueError("continue_final=True needs chat messages, not a raw prompt")
            if self.messages[-1].get("role") != "assistant":
                raise ValueError("continue_final=True needs an assistant message last")
        if self.n < 1:
            raise ValueError(f"Request.n must be >= 1, got {self.n}")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"Request.seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling shared by all requests of one ``generate`` call. ``temperature == 0`` is greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_tokens: int = 256
    seed: int = 0
    # No stage sets these two yet. Kept, engine-tested, for the work they exist for: stop strings for
    # ending a rollout once its answer is boxed (the demo's generation budget), and processed
    # log-probabilities for the run report's on-policy-ness view (NLL of SFT targets under the policy).
    stop: tuple[str, ...] = ()
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if isinstance(self.stop, str):  # a bare string would silently become a tuple of characters
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One sample.

    ``text`` excludes the end-of-sequence token and any stop string. ``token_ids`` are the generated
    ids as the backend produced them: they include the EOS token when generation ended on it and the
    tokens that spelled a stop string (as vLLM does), never padding or anything after. ``logprobs``
    (when requested) aligns with ``token_ids``. HTTP engines give ``token_ids == []``.
    """

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length"
    logprobs: list[float] | None
    prompt_tokens: int


ProgressFn = Callable[[int, int], None]


@runtime_checkable
class Generator(Protocol):
    """What stages need from an engine."""

    tokenizer: Any  # a transformers tokenizer (None allowed for HTTP engines)

    def generate(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        """One list of ``request.n`` completions per request, in input order.

        ``on_progress(new_sequences_done, new_tokens_generated)`` is called as sequences finish.
        """
        ...


class EngineError(RuntimeError):
    """A backend failed in a way the caller should see (e.g. an HTTP server that does not answer)."""


def _as_ids(out: Any) -> list[int]:
    """Normalise what ``apply_chat_template(tokenize=True)`` / ``tokenizer(...)`` returned to ids.

    transformers 5.x returns a ``BatchEncoding`` from ``apply_chat_template`` by default
    (``return_dict=True``); older versions return a plain list.
    """
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    out = list(out)
    if out and isinstance(out[0], (list, tuple)):  # a batch of one
        if len(out) != 1:
            raise ValueError("expected the ids of a single sequence")
        out = list(out[0])
    return [int(i) for i in out]


def render_ids(tokenizer: Any, request: Request, chat_template_kwargs: dict | None = None) -> list[int]:
    """The token ids a model is prompted with for ``request``.

    - chat: ``apply_chat_template(messages, add_generation_prompt=True)`` (+ ``chat_template_kwargs``);
    - chat with ``continue_final``: the template applied to ``messages[:-1]`` with the generation
      prompt, followed by ``tokenizer(messages[-1]["content"], add_special_tokens=False)`` — the
      partial assistant text is tokenized on its own, exactly as SFT tokenizes a target, and no
      end-of-turn token follows it;
    - raw ``prompt``: ``tokenizer(prompt)`` with the tokenizer's default special tokens.
    """
    kwargs = dict(chat_template_kwargs or {})
    if request.prompt is not None:
        return _as_ids(tokenizer(request.prompt)["input_ids"])
    messages = list(request.messages or [])
    if request.continue_final:
        head, final = messages[:-1], messages[-1]
        if not head:
            raise ValueError("continue_final needs at least one message before the assistant prefix")
        ids = _chat_ids(tokenizer, head, kwargs)
        tail = tokenizer(final.get("content") or "", add_special_tokens=False)["input_ids"]
        return ids + _as_ids(tail)
    return _chat_ids(tokenizer, messages, kwargs)


def _chat_ids(tokenizer: Any, messages: list[dict], kwargs: dict) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False, **kwargs
    )
    return _as_ids(out)


def request_seed(request: Request, call_seed: int, index: int) -> int:
    """The seed a request samples with: its own, else one derived from the call's seed and its position."""
    return request.seed if request.seed is not None else derive_seed(call_seed, index)


def derive_seed(seed: int, index: int) -> int:
    """A per-request seed (31-bit) from a call seed and the request's position.

    Engines that seed each request separately (vLLM, HTTP) use this so that identical prompts at
    different positions still get different samples, while the same call repeats exactly.
    """
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF

"""What every stage needs: its stage folder, loaded problems, a generator per model, one grading
pool, shard seeds, and graded generation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intrain.config import Config, ModelConfig, SamplingConfig
from intrain.data import Problem, load_problems
from intrain.engines.base import Completion, Generator, ProgressFn, Request, SamplingParams
from intrain.fingerprints import StageInputs, fingerprint
from intrain.grading import Grader, Verdict
from intrain.progress import console
from intrain.store import Stage


def shard_seed(base: int, shard: int) -> int:
    """Each shard gets its own seed, so a resumed run regenerates a missing shard identically."""
    return (base * 1_000_003 + shard) % (2**31 - 1)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def sampling_params(cfg: SamplingConfig, shard: int, **overrides: Any) -> SamplingParams:
    params: dict[str, Any] = dict(
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        max_tokens=cfg.max_tokens,
        seed=shard_seed(cfg.seed, shard),
    )
    params.update(overrides)
    return SamplingParams(**params)


@dataclass(frozen=True)
class Graded:
    completion: Completion
    verdict: Verdict


def generate_graded(
    generator: Generator,
    grader: Grader,
    requests: list[Request],
    golds: list[str],
    params: SamplingParams,
    on_progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
) -> list[list[Graded]]:
    """Generate every request's samples and grade each against its request's gold answer, in one
    grading batch (the pool is fastest fed all at once); the result keeps the requests' shape.
    `timings` (if given) accumulates `generate_s` and `grade_s`."""
    t0 = time.time()
    outputs = generator.generate(requests, params, on_progress=on_progress)
    t1 = time.time()
    texts = [c.text for completions in outputs for c in completions]
    flat_golds = [gold for gold, completions in zip(golds, outputs, strict=True) for _ in completions]
    verdicts = iter(grader.grade(texts, flat_golds))
    if timings is not None:
        timings["generate_s"] = timings.get("generate_s", 0.0) + t1 - t0
        timings["grade_s"] = timings.get("grade_s", 0.0) + time.time() - t1
    return [[Graded(c, next(verdicts)) for c in completions] for completions in outputs]


def user_message(template: str, problem: str) -> list[dict[str, str]]:
    # str.replace, not str.format: problems are full of LaTeX braces.
    return [{"role": "user", "content": template.replace("{problem}", problem)}]


@dataclass
class RunContext:
    """Shared, lazily built resources of one CLI invocation."""

    config: Config
    run_dir: Path
    force: bool = False
    _grader: Grader | None = None
    _generators: dict[tuple, Generator] = field(default_factory=dict)

    @property
    def grader(self) -> Grader:
        if self._grader is None:
            self._grader = Grader(workers=self.config.grading.workers, timeout_s=self.config.grading.timeout_s)
        return self._grader

    def open_stage(self, name: str, inputs: StageInputs, config: Config | None = None, **arguments: Any) -> Stage:
        """The stage folder `name`, fingerprinted from its declared inputs (of `config`, default the run's)
        and the call's explicit arguments; refuses a folder produced from other inputs unless forced."""
        digest = fingerprint(inputs, config or self.config, self.run_dir, **arguments)
        return Stage(self.run_dir, name, digest, force=self.force)

    def problems(self, split: str) -> list[Problem]:
        source = self.config.data.eval if split == "eval" and self.config.data.eval else self.config.data.train
        problems, skipped = load_problems(source, self.config.data.on_invalid)
        if skipped:
            console.print(f"[yellow]{split}: skipped {len(skipped)} invalid rows: {', '.join(skipped[:10])}")
        return problems

    def generator(self, model: ModelConfig, path: str | None = None, adapter: str | None = None) -> Generator:
        """A generator for `model` (its configured path and adapter), or for an explicit checkpoint
        `path` (+ `adapter`); one is kept resident at a time to bound a laptop's memory."""
        if path is None:
            path, adapter = model.path, model.adapter
        key = (path, adapter, model.engine)
        if key not in self._generators:
            self.release_generators()
            self._generators[key] = build_generator(model, path, adapter)
        return self._generators[key]

    def release_generators(self) -> None:
        for gen in self._generators.values():
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        self._generators.clear()

    def close(self) -> None:
        self.release_generators()
        if self._grader is not None:
            self._grader.close()
            self._grader = None


def build_generator(model: ModelConfig, path: str, adapter: str | None) -> Generator:
    if model.engine == "vllm":
        from intrain.engines.vllm import VLLMGenerator
        from intrain.models import resolve_model_path

        if adapter:
            raise ValueError("model.adapter: merge the adapter into a checkpoint before using the vllm engine")
        return VLLMGenerator(
            resolve_model_path(path),
            tensor_parallel_size=model.tensor_parallel_size,
            gpu_memory_utilization=model.gpu_memory_utilization,
            max_model_len=model.max_model_len,
            dtype=model.dtype,
            chat_template_kwargs=model.chat_template_kwargs,
        )
    from intrain.engines.hf import HFGenerator

    return HFGenerator.load(
        path,
        device=model.device,
        dtype=model.dtype,
        adapter=adapter,
        batch_size=model.batch_size,
        chat_template_kwargs=model.chat_template_kwargs,
    )

"""What every stage needs: its stage folder, loaded problems, a generator per model, one grading
pool, shard seeds, graded generation, and `run_shards`, the one loop over a stage's shards (in this
process, or on Ray actors when the generating model has a `ray` section)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intrain.config import Config, ModelConfig, RayConfig, SamplingConfig
from intrain.data import Problem, load_problems
from intrain.engines.base import Completion, Generator, ProgressFn, Request, SamplingParams
from intrain.fingerprints import StageInputs, fingerprint
from intrain.grading import Grader, Verdict
from intrain.progress import StageProgress, console
from intrain.records import Record
from intrain.store import Stage, report_metrics_to

if TYPE_CHECKING:
    from intrain.stages.ray_shards import ShardPool


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
class ShardReport:
    """What a shard's work reports besides its records: sequences and tokens as they are generated (passed
    on to `on_progress`, the stage's bar, when the shard runs in this process) and seconds spent."""

    on_progress: ProgressFn | None = None
    sequences: int = 0
    tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def advance(self, sequences: int, tokens: int = 0) -> None:
        self.sequences += sequences
        self.tokens += tokens
        if self.on_progress is not None:
            self.on_progress(sequences, tokens)


# A shard's work: (resources, shard index, the shard's items, report) -> the shard's records. It reads the
# run's config from `ctx.config` and builds its engine and grader through `ctx`, so the same picklable
# function (module-level, or a functools.partial of one) runs in this process or inside a Ray actor.
ShardWork = Callable[["RunContext", int, list[Any], ShardReport], Sequence[Record]]


def run_shards(
    ctx: RunContext,
    stage: Stage,
    shards: list[list[Any]],
    work: ShardWork,
    record: type[Record],
    description: str,
    units_per_item: int = 1,
    ray: RayConfig | None = None,
) -> dict[str, float]:
    """Run `work` on every shard not yet in `stage` and write each shard's records as it finishes; in this
    process, or on `ray`'s actors. The bar counts `units_per_item` per item. Returns summed timings + tokens."""
    todo = [index for index in range(len(shards)) if not stage.has_shard(index)]
    timings: dict[str, float] = {}

    def done(index: int, records: Sequence[Record], report: ShardReport) -> None:
        stage.write_records(index, records, record)
        for key, seconds in report.timings.items():
            timings[key] = timings.get(key, 0.0) + seconds

    units = [len(shard) * units_per_item for shard in shards]
    with StageProgress(description, total=sum(units)) as progress:
        progress.advance(sum(units) - sum(units[i] for i in todo))
        if ray is None:
            for index in todo:
                report = ShardReport(on_progress=progress.advance)
                done(index, work(ctx, index, shards[index], report), report)
                progress.advance(units[index] - report.sequences)  # what the work did not report as it went
        elif todo:  # a finished stage starts no actors
            for index, records, report in ctx.shard_pool(ray).run(ctx.config, work, [(i, shards[i]) for i in todo]):
                done(index, records, report)
                progress.advance(units[index], report.tokens)
        timings["tokens"] = progress.tokens
    return {k: round(v, 2) for k, v in timings.items()}


@dataclass
class RunContext:
    """Shared, lazily built resources of one CLI invocation (or of one Ray actor, see ray_shards.py)."""

    config: Config
    run_dir: Path
    force: bool = False
    _grader: Grader | None = None
    _generators: dict[tuple, Generator] = field(default_factory=dict)
    _tokenizers: dict[str, Any] = field(default_factory=dict)
    _pool: ShardPool | None = None

    def __post_init__(self) -> None:
        # Where this run's finished stages and trainers also send their metrics (output.report_to).
        report_metrics_to(self.run_dir, self.config.output.report_to)

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

    def tokenizer(self, path: str) -> Any:
        """The tokenizer of model spec `path`, loaded once."""
        if path not in self._tokenizers:
            from intrain.models import load_tokenizer

            self._tokenizers[path] = load_tokenizer(path)
        return self._tokenizers[path]

    def shard_pool(self, ray: RayConfig) -> ShardPool:
        """Ray actors for `ray`, kept across stages (each keeps its engine loaded) until released."""
        from intrain.stages.ray_shards import ShardPool  # the only way in to ray: no `ray` section, no import

        if self._pool is not None and self._pool.ray != ray:
            self._pool.close()
            self._pool = None
        if self._pool is None:
            self._pool = ShardPool(ray, self.run_dir)
        return self._pool

    def release_generators(self) -> None:
        """Free every engine: this process's and the Ray actors' (training needs the memory)."""
        for gen in self._generators.values():
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        self._generators.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def close(self) -> None:
        self.release_generators()
        if self._grader is not None:
            self._grader.close()
            self._grader = None


def build_generator(model: ModelConfig, path: str, adapter: str | None) -> Generator:
    if model.engine == "vllm":
        from intrain.engines.vllm import VLLMGenerator
        from intrain.models import adapter_base, resolve_model_path

        if adapter or adapter_base(path):
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

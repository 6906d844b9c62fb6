"""One typed config for a whole InT run.

A YAML file maps onto `Config`; each stage reads its own section. Defaults are the paper's values
(arXiv 2601.14209 and the authors' scripts) wherever the paper has one; `configs/demo.yaml` shrinks
them for a laptop. All validation lives here: a bad key or value fails at load time with its dotted
path, before any model is loaded.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PACKAGED_CONFIGS = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the dotted field path."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(Section):
    """Where a model's generation shards run: Ray actors, each holding one engine of that model (and its own
    grading pool once a shard grades). Needs the 'dist' extra. Shards keep their per-shard seeds and the
    driver writes each one as it arrives, so what a stage writes does not depend on any field here.

    `model.ray` places sample, eval, filter, reflect and the self-proposer; `propose.proposer.model.ray`
    places a `kind: model` proposer; `openai` and `oracle` proposers hold no engine and run in the driver.
    Every path the config names (model, adapter, template, checkpoints) must be readable on every node.
    """

    address: str = Field(
        "auto",
        description="Which cluster: 'auto' (the running one, e.g. after `ray start --head`), 'local' (start a "
        "private one on this machine), 'ray://host:port' (Ray Client) or a head node's 'host:port'.",
    )
    workers: int = Field(1, ge=1, description="Actors to run shards on, one engine each.")
    resources_per_worker: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"CPU": 1.0},
        description="Ray resources each actor reserves, e.g. {GPU: 1} (vllm: at least tensor_parallel_size "
        "GPUs) or {CPU: 4}; CPU and GPU become num_cpus and num_gpus, other keys custom resources.",
    )


class ModelConfig(Section):
    path: str = Field(
        "embedded:smollm2",
        description="Policy model: a local HF folder, a hub id, or 'embedded:smollm2' (packaged, offline).",
    )
    adapter: str | None = Field(
        None,
        description="A PEFT LoRA adapter folder merged into the model at load (relative paths: from the config file).",
    )
    train_adapter: bool = Field(
        False,
        description="SFT and RL train `adapter` itself (its LoRA weights; the base stays frozen) and save adapter "
        "folders that name their base, a few MB each, instead of merging it and saving every weight.",
    )
    engine: Literal["hf", "vllm"] = Field(
        "hf", description="Generation backend: 'hf' (transformers, CPU or GPU) or 'vllm' (GPU, needs the 'gpu' extra)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the hf engine and training run.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    batch_size: int = Field(16, ge=1, description="Sequences decoded together by the hf engine.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM share of GPU memory.")
    max_model_len: int | None = Field(32768, ge=1, description="vLLM context length (paper: 32768).")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra chat-template variables, e.g. {enable_thinking: false}."
    )
    ray: RayConfig | None = Field(
        None, description="Run this model's generation shards on Ray actors (see RayConfig); null = in this process."
    )

    @model_validator(mode="after")
    def _adapter_to_train(self) -> ModelConfig:
        if self.train_adapter and self.adapter is None:
            raise ValueError("train_adapter: there is no model.adapter to train")
        if self.train_adapter and self.engine == "vllm":
            # vLLM loads merged checkpoints (build_generator); an adapter folder is not one.
            raise ValueError("train_adapter: the vllm engine cannot load the adapter folders it saves; use engine hf")
        return self

    @model_validator(mode="after")
    def _vllm_workers_have_gpus(self) -> ModelConfig:
        # A vllm actor without GPUs would fail only once a shard reaches it, on a remote node.
        if self.ray is not None and self.engine == "vllm":
            gpus = self.ray.resources_per_worker.get("GPU", 0)
            if gpus < self.tensor_parallel_size:
                raise ValueError(
                    f"ray.resources_per_worker: the vllm engine needs GPU >= tensor_parallel_size "
                    f"({self.tensor_parallel_size}) per worker, got {gpus}"
                )
        return self


class SamplingConfig(Section):
    """Sampling shared by every generating stage. Paper defaults: Qwen3-4B-Instruct-2507's settings."""

    n: int = Field(4, ge=1, description="Samples per prompt.")
    temperature: float = Field(0.7, ge=0, description="0 = greedy.")
    top_p: float = Field(0.8, gt=0, le=1)
    top_k: int = Field(20, ge=0, description="0 = off.")
    max_tokens: int = Field(16384, ge=1, description="New tokens per sample (paper: 16,384).")
    seed: int = Field(0, description="Base seed; each shard derives its own from it.")
    shard_size: int = Field(64, ge=1, description="Prompts per written shard: a crash loses at most one shard.")


class SourceConfig(Section):
    kind: Literal["file", "hf", "arithmetic", "champ"] = Field(
        "arithmetic",
        description="file (jsonl/json/parquet/csv), hf (datasets hub or local path), arithmetic (offline "
        "generator), champ.",
    )
    path: str | None = Field(None, description="file/champ: path to the data file.")
    name: str | None = Field(None, description="hf: dataset name or local dataset path.")
    subset: str | None = Field(None, description="hf: configuration name.")
    split: str = Field("train", description="hf: split.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Our field -> the source's column (fields: id, problem, answer, reference_solution, source).",
    )
    source: str | None = Field(None, description="Value of the 'source' column when the data has none.")
    size: int = Field(64, ge=1, description="arithmetic: number of problems.")
    seed: int = Field(0, description="arithmetic: generator seed (train and eval sets must differ).")
    steps: tuple[int, int] = Field((2, 3), description="arithmetic: min and max operations per problem.")
    max_operand: int = Field(20, ge=2, description="arithmetic: largest operand.")
    max_result: int = Field(1000, ge=2, description="arithmetic: largest intermediate or final value.")
    limit: int | None = Field(None, ge=1, description="Keep only the first N problems.")

    @model_validator(mode="after")
    def _needs_location(self) -> SourceConfig:
        if self.kind in ("file",) and not self.path:
            raise ValueError("kind 'file' needs 'path'")
        if self.kind == "hf" and not self.name:
            raise ValueError("kind 'hf' needs 'name'")
        if self.steps[0] < 1 or self.steps[0] > self.steps[1]:
            raise ValueError("steps must be [min, max] with 1 <= min <= max")
        return self


class DataConfig(Section):
    train: SourceConfig = Field(
        default_factory=SourceConfig, description="Problems to sample, propose on and train on."
    )
    eval: SourceConfig | None = Field(None, description="Held-out problems for eval; None = evaluate on train.")
    prompt_template: str = Field(
        "{problem}",
        description="User message built from a problem (paper: the raw problem text, no system prompt).",
    )
    on_invalid: Literal["error", "skip"] = Field(
        "error", description="Rows with an empty problem or answer: fail naming them, or skip and count."
    )

    @model_validator(mode="after")
    def _template_has_problem(self) -> DataConfig:
        if "{problem}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{problem}'")
        return self


class SampleConfig(SamplingConfig):
    """On-policy rollouts (paper: K=4 per problem)."""


class ProposerConfig(Section):
    kind: Literal["self", "model", "openai", "oracle"] = Field(
        "self",
        description="self = the policy proposes (the paper); model = another local model; openai = an HTTP "
        "endpoint; oracle = the true first error and its correct step, for problems whose family "
        "has ground truth (the arithmetic family), with the noise below.",
    )
    location_noise: float = Field(
        0.0, ge=0, le=1, description="oracle: probability of pointing at another substep than the true first error."
    )
    content_noise: float = Field(
        0.0, ge=0, le=1, description="oracle: probability that the replacement step computes a wrong value."
    )
    model: ModelConfig | None = Field(None, description="kind=model: the proposer model.")
    base_url: str | None = Field(None, description="kind=openai: e.g. http://127.0.0.1:8000/v1.")
    name: str | None = Field(None, description="kind=openai: model name sent to the endpoint.")

    @model_validator(mode="after")
    def _complete(self) -> ProposerConfig:
        if self.kind == "model" and self.model is None:
            raise ValueError("kind 'model' needs 'model'")
        if self.kind == "openai" and not (self.base_url and self.name):
            raise ValueError("kind 'openai' needs 'base_url' and 'name'")
        if self.model is not None and self.model.train_adapter:
            # SFT and RL train the policy; a separate proposer is only ever loaded for generation.
            raise ValueError("model.train_adapter: the proposer is never trained; set it on the policy's model")
        return self


class ProposeConfig(SamplingConfig):
    """Self-proposed interventions for failed rollouts (paper: K=4 per incorrect attempt)."""

    proposer: ProposerConfig = Field(default_factory=ProposerConfig, description="Who writes interventions.")
    template: str = Field(
        "paper",
        description="'paper' (two-turn, solve then verify), 'compact' (single turn), or a path to a .jinja file.",
    )
    max_prompt_tokens: int = Field(30000, ge=64, description="Rendered prompt cap; the attempt's tail is cut first.")
    max_attempts: int | None = Field(None, ge=1, description="Propose on at most this many failed attempts.")
    separator: str = Field("\n\n", min_length=1, description="Substep separator (paper: a blank line).")
    leak_filter: bool = Field(
        True, description="Mark interventions that state the gold answer as `leak` (not filtered on)."
    )
    leak_mode: Literal["normalised", "substring"] = Field(
        "normalised",
        description="How `leak_filter` finds the gold answer in an intervention. normalised: both sides "
        "lowercased and LaTeX-normalised (\\dfrac{1}{2} = 1/2, 1,000 = 1000), numbers matched "
        "on number boundaries (gold 1 does not leak in '10' or 'x_1'). substring: the raw gold "
        "string occurs in the raw content, case-sensitive, as the authors' "
        "parse_interventions.ipynb does (`answer in content`): gold 1 leaks in '10', but "
        "'\\frac{1}{2}' does not leak for gold 1/2. See interventions/leaks.py.",
    )
    per_attempt: Literal["first_ok", "all"] = Field(
        "first_ok",
        description="first_ok = keep the first `ok` proposal of each failed attempt and mark later ones "
        "`not_first` (paper: one intervention per attempt); all = keep every `ok` proposal.",
    )


class FilterConfig(SamplingConfig):
    """Keep interventions from which at least `min_correct` of `n` continuations are correct."""

    enabled: bool = Field(True, description="Run the continuation filter (the paper calls it optional; it helps).")
    n: int = Field(32, ge=1, description="Continuations per intervention (paper: 32).")
    min_correct: int = Field(1, ge=1, description="Keep when at least this many continuations are correct.")
    wave_size: int = Field(8, ge=1, description="Continuations per wave; sampling stops once the decision is fixed.")
    diagnose: bool = Field(
        False, description="Also continue from prefix + the original erroneous step (paper Table 1)."
    )
    verify: bool = Field(
        False,
        description="Families with ground truth (arithmetic): also require the guided prefix (own prefix + "
        "intervention) to be free of errors by the ground truth, so a lucky continuation cannot keep a wrong "
        "intervention. Data of other families is refused.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FilterConfig:
        if self.min_correct > self.n:
            raise ValueError("min_correct cannot exceed n")
        return self


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class SFTConfig(Section):
    """SFT on problem -> (own prefix + intervention), prompt masked, no end-of-turn (paper Table 6)."""

    learning_rate: float = Field(1e-6, gt=0)
    epochs: float = Field(4, gt=0)
    effective_batch_size: int = Field(64, ge=1, description="per_device_batch_size x grad accumulation x devices.")
    per_device_batch_size: int = Field(1, ge=1)
    max_length: int = Field(16384, ge=16, description="Rows longer than this are dropped (and counted).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_rate: float = Field(0.1, ge=0, le=1, description="Cosine decays to this fraction of the peak lr.")
    weight_decay: float = Field(0.0, ge=0)
    lora: LoraConfig | None = Field(
        None, description="Train a LoRA adapter (merged when saved) instead of all weights."
    )
    gradient_checkpointing: bool = Field(False)
    group_by_length: bool = Field(
        False,
        description="Batch rows of similar length together (transformers' LengthGroupedSampler): less padding "
        "when rows differ a lot in length, at the cost of a less random batch composition.",
    )
    seed: int = Field(0, description="Seeds the trainer's data order and the `max_rows` subsample.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps (resume point).")
    target: Literal["prefix_intervention", "intervention", "prefix_intervention_suffix"] = Field(
        "prefix_intervention",
        description="InT SFT only, what each kept row clones (the paper's Table 2 ablation): the own prefix "
        "+ intervention with no end-of-turn (InT); the intervention alone, without the prefix, no "
        "end-of-turn; or prefix + intervention + the correct continuation the filter found, turn "
        "closed (needs the filter on: rows without a correct continuation are dropped).",
    )
    max_rows: int | None = Field(
        None,
        ge=1,
        description="InT SFT only: train on at most this many kept filter rows; None = all. The subsample "
        "takes one row per problem first (problems in a seed-shuffled order), then further rows "
        "round-robin, so it covers as many problems as the cap allows; deterministic given "
        "`seed`. The paper is ambiguous here: its Table 6 gives dataset_size 1076 (= problems), "
        "the released CMU-AIRe/InT-SFT has 2,213 rows, and LLaMA-Factory's example SFT yaml that "
        "sft.sh builds on sets max_samples 1000. The baselines' SFT arms are not capped.",
    )


class RLConfig(Section):
    """Outcome-reward GRPO after SFT (paper Table 5: PipelineRL, 400 steps, group 8, no KL).

    Advantage = reward - group mean with no std scaling and no KL term, as in the paper; one
    optimizer step consumes `prompts_per_step` x `group_size` fresh completions (on-policy):
    32 prompts x 8 rollouts = 256 rollouts per step, PipelineRL's 256 samples per optimizer step.

    Which problems RL trains on is `data`: the run's training problems (null), any problem source
    (a mapping like `data.train`, e.g. the released CMU-AIRe/InT-RL), or `covered`, the
    deduplicated problems with at least one kept row in this run's `filter` stage (what InT-RL is
    for the authors' run: "the same deduplicated set of problems" as SFT).
    """

    enabled: bool = Field(False, description="Run RL after SFT in `intrain run`.")
    data: SourceConfig | Literal["covered"] | None = Field(
        None,
        description="RL problems. null = the run's training problems (`data.train`); a source mapping "
        "({kind: hf, name: CMU-AIRe/InT-RL, ...}, same fields as `data.train`) = those problems; "
        "'covered' = the distinct problems with at least one kept row in this run's filter stage "
        "(the filter stage must be complete; the RL stage then depends on it). Every arm of "
        "`intrain compare` trains RL on the same problems.",
    )
    steps: int = Field(400, ge=1, description="Optimizer steps (paper: 400).")
    group_size: int = Field(8, ge=2, description="Rollouts per prompt; the advantage baseline is their mean reward.")
    prompts_per_step: int = Field(
        32, ge=1, description="Prompts per optimizer step (paper: 32 prompts x 8 rollouts = 256 rollouts per step)."
    )
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate (paper: 1e-6).")
    lr_scheduler: Literal["constant", "cosine", "linear"] = Field(
        "cosine", description="Learning-rate schedule over `steps` (PipelineRL default: cosine)."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming the lr up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (PipelineRL default: 0.01).")
    max_grad_norm: float = Field(0.3, gt=0, description="Gradient-norm clip (PipelineRL default: 0.3).")
    temperature: float = Field(1.0, gt=0, description="Rollout sampling temperature (paper: 1.0).")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus sampling (paper: 1.0).")
    max_completion_tokens: int = Field(16384, ge=1, description="New tokens per rollout; longer ones are cut.")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"] = Field(
        "dapo", description="TRL loss normalisation; dapo = mean over all completion tokens of the step."
    )
    mask_truncated_completions: bool = Field(
        False, description="Leave cut-off rollouts out of the loss (the paper rewards them like any other: 0 or 1)."
    )
    per_device_batch_size: int | None = Field(
        None,
        ge=1,
        description="Completions per forward/backward micro-batch; None = group_size. "
        "Must divide prompts_per_step x group_size (the rest is gradient accumulation).",
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps (resume point).")
    hint_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Hint-guided RL baseline (the POPE recipe): share of the RL problems (a fixed, "
        "seed-chosen subset) that appear twice in the RL data, once plain and once with a "
        "short prefix of their reference solution (`hint_steps`); the others appear once, "
        "plain. 0 = plain RL.",
    )
    hint_steps: int = Field(
        1,
        ge=1,
        description="Length of that prefix in blank-line-separated reference steps; 1 = the first step, the "
        "minimal guidance (POPE's 'first_guide'). Never the whole reference: at most all steps but "
        "the last (which states the answer), so a reference of one step gives no guided copy.",
    )
    use_vllm: Literal["auto", "never", "always"] = Field(
        "auto",
        description="Generate rollouts with vLLM (where: `vllm_mode`): auto = when CUDA and vllm are "
        "available; never = the HF engine (one process) or transformers generate (a multi-process launch).",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3,
        gt=0,
        le=1,
        description="vllm_mode=colocate: GPU memory share of the colocated vLLM engine (the trainer needs the rest); "
        "a server takes its own --gpu-memory-utilization.",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="Where vLLM generates rollouts: colocate = an engine inside every training process, on the "
        "training GPUs; server = a separate `trl vllm-serve` / `vllm serve` process on GPUs of its own (started "
        "beforehand, serving this stage's initial model; the trainer pushes its weights to it every step). "
        "Server mode needs vllm importable in the trainer too, and use_vllm auto or always.",
    )
    vllm_server_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="vllm_mode=server: the server's address (its --host/--port), reached from the main training "
        "process; weights travel over a NCCL group that also needs TRL's group port 51216 open.",
    )
    vllm_server_timeout: float = Field(
        240.0, gt=0, description="vllm_mode=server: seconds to wait for the server to answer before failing."
    )
    seed: int = Field(0, description="Seeds the trainer, the prompt order and the choice of guided problems.")

    @model_validator(mode="after")
    def _server_uses_vllm(self) -> RLConfig:
        # A server started for nothing: with use_vllm never the trainer would generate with transformers.
        if self.vllm_mode == "server" and self.use_vllm == "never":
            raise ValueError("vllm_mode 'server' generates with vLLM; it needs use_vllm auto or always, not never")
        return self

    @model_validator(mode="after")
    def _batch_fits(self) -> RLConfig:
        total = self.prompts_per_step * self.group_size
        if self.per_device_batch_size is not None and total % self.per_device_batch_size:
            raise ValueError(
                f"per_device_batch_size ({self.per_device_batch_size}) must divide "
                f"prompts_per_step x group_size ({total})"
            )
        return self


class EvalConfig(SamplingConfig):
    """pass@k on held-out problems (paper: 128 samples per problem)."""

    n: int = Field(128, ge=1)
    ks: list[int] = Field(default_factory=lambda: [1, 8], description="k values for unbiased pass@k (k <= n).")

    @model_validator(mode="after")
    def _ks_fit(self) -> EvalConfig:
        bad = [k for k in self.ks if k < 1 or k > self.n]
        if bad or not self.ks:
            raise ValueError(f"ks must be non-empty with 1 <= k <= n={self.n}; got {self.ks}")
        return self


class WarmupConfig(Section):
    """Verification warm-up of a small proposer on the arithmetic family (`intrain warmup`, see warmup.py)."""

    synthetic_examples: int = Field(240, ge=0, description="Synthetic faulty attempts with a known first error.")
    synthetic_slip_weights: list[Annotated[float, Field(gt=0)]] | None = Field(
        None,
        min_length=1,
        description="Chance of a synthetic slip in the k-th computation, in proportion to the k-th weight (the last "
        "one repeats); unset: every computation alike. Weighting later ones offsets the base policy's own "
        "failed attempts, which mostly slip in the first.",
    )
    solution_examples: int = Field(
        0, ge=0, description="Problem -> reference solution rows mixed in, teaching the family's answer format."
    )
    policy_problems: int = Field(48, ge=0, description="Problems the policy attempts; its checkable failures are used.")
    policy_samples: int = Field(4, ge=1, description="Attempts per policy problem.")
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="Problems held out to measure proposer skill.")
    proposal_max_tokens: int = Field(96, ge=8, description="Proposal length when measuring skill.")
    learning_curve: bool = Field(
        True, description="Also measure skill at every checkpoint (train.save_steps): skill vs training examples."
    )
    seed: int = Field(7, description="Seeds problem generation (keep it apart from data seeds).")
    train: SFTConfig = Field(
        default_factory=lambda: SFTConfig(
            learning_rate=2e-4,
            epochs=2,
            effective_batch_size=8,
            per_device_batch_size=4,
            max_length=1024,
            warmup_ratio=0.05,
            lora=LoraConfig(),
            save_steps=25,
            group_by_length=True,  # ~700-token proposer rows and ~120-token solution rows
        ),
        description="LoRA SFT settings for the warm-up; fields given override these, the rest keep them.",
    )
    output: str | None = Field(
        None, description="Where the adapter is written (relative: from the config file); None = RUN/warmup/adapter."
    )

    @model_validator(mode="before")
    @classmethod
    def _train_over_warmup_defaults(cls, data: Any) -> Any:
        # A partial `train` (`--set warmup.train.epochs=3`) keeps the warm-up's other settings (LoRA,
        # lr 2e-4), not SFTConfig's class defaults.
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            defaults = cls.model_fields["train"].get_default(call_default_factory=True)
            data = {**data, "train": {**defaults.model_dump(), **data["train"]}}
        return data


# The arms of `intrain compare` (compare.py says what each one trains).
Arm = Literal["rl", "hint_rl", "sft_reference", "sft_reflection", "rft", "int"]
ARMS: tuple[Arm, ...] = typing.get_args(Arm)


class CompareConfig(Section):
    """`intrain compare`: the paper's baselines against InT under one RL budget (see compare.py)."""

    arms: list[Arm] = Field(default_factory=lambda: list(ARMS), description="Arms to run (CLI --arms overrides).")
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1, description="RL seeds per arm.")
    baseline_seeds: list[int] | None = Field(
        None, description="RL seeds for the arms other than int and rl, to save compute; None = `seeds`."
    )
    hint_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="hint_rl: `rl.hint_share` of that arm, the share of RL problems that also appear "
        "with a reference prefix (POPE's mix: every hard problem guided and unguided).",
    )


class PretrainConfig(Section):
    """`intrain lab pretrain`: a small Qwen3 trained from random weights on the family (lab/pretrain.py)."""

    examples: int = Field(20000, ge=1, description="Training problems, drawn with data.train's knobs and `seed`.")
    seed: int = Field(1234, description="Seeds the problems, the initial weights and the data order.")
    vocab_size: int = Field(1024, ge=300, description="Byte-level BPE vocabulary, trained on those problems.")
    hidden_size: int = Field(256, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    head_dim: int = Field(64, ge=8, description="64 or more: vLLM's CPU attention backend needs it.")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(64, ge=1, description="Sequences per optimizer step.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak lr (5% warm-up, cosine to a tenth).")
    output: str | None = Field(
        None, description="Model folder; None = <run_dir>/lab-model. The model is <output>/model."
    )


class LabConfig(Section):
    """`intrain lab`: controlled experiments on a family with ground truth (see lab/)."""

    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="`intrain lab pretrain`.")
    hard_k: int = Field(
        8,
        ge=1,
        description="hard-split: samples per problem (with `sample`'s settings); a problem is hard when none "
        "of them is correct (the paper's hard set: the base policy fails all of K).",
    )

    attempts: int = Field(60, ge=1, description="table1: failed attempts with a ground-truth first error to study.")
    n: int = Field(8, ge=1, description="table1: continuations per attempt and condition.")
    oracle_seed: int = Field(0, description="table1, filter-precision: seeds the oracle's interventions.")
    precision_n: int = Field(
        32, ge=1, description="filter-precision: continuations per candidate; smaller n are read off their first n."
    )
    precision_noise: float = Field(
        0.5,
        ge=0,
        le=1,
        description="filter-precision: the oracle's location noise, so that its candidates mix right and wrong "
        "interventions whose correctness the ground truth knows.",
    )


class GradingConfig(Section):
    workers: int = Field(2, ge=1, description="Grading worker processes.")
    timeout_s: float = Field(10.0, gt=0, description="Hard wall-clock limit per item (paper: 10 s).")


class OutputConfig(Section):
    run_dir: str = Field("runs/default", description="Run directory (relative paths: from the working directory).")
    keep_checkpoints: int = Field(
        0,
        ge=0,
        description="Training checkpoints (weights + optimizer state: about 50 GB each for a 4B model) left in an "
        "SFT or RL stage's folder once the stage has completed; its final model is always kept. While a stage "
        "trains, the newest max(1, N) are kept so that a killed run resumes.",
    )
    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=list,
        description="Trackers that also get the run's metrics: each stage's counts and timings as it finishes "
        "(RUN/metrics.jsonl holds them either way) and TRL's per-step SFT/RL logs. Each needs its package "
        "installed (the 'tensorboard', 'wandb' or 'trackio' extra); [] = none.",
    )

    @field_validator("report_to")
    @classmethod
    def _trackers_are_installed(cls, report_to: list[str]) -> list[str]:
        # Fail at load, not hours later when the first stage finishes or TRL's trainer starts.
        import importlib.util

        for tracker in report_to:
            if importlib.util.find_spec(tracker) is None:
                hint = f"pip install 'intrain[{tracker}]', or remove it from the list"
                raise ValueError(f"{tracker} is not installed ({hint})")
        return report_to


class Config(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    propose: ProposeConfig = Field(default_factory=ProposeConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    lab: LabConfig = Field(default_factory=LabConfig)
    grading: GradingConfig = Field(default_factory=GradingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _one_adapter_trains(self) -> Config:
        if self.model.train_adapter and self.sft.lora is not None:
            raise ValueError("sft.lora: model.train_adapter already trains model.adapter; set one of them")
        return self


def resolve_config_path(name_or_path: str) -> Path:
    """A path, or the bare name of a packaged config (`demo`, `paper-qwen3-4b-instruct`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = PACKAGED_CONFIGS / f"{name_or_path}.yaml"
    if packaged.exists():
        return packaged
    raise ConfigError(f"config not found: {name_or_path} (no such file, and no packaged config of that name)")


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply `dotted.key=value` to a raw config dict; the value is parsed as YAML."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else None


def _format_errors(origin: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"{origin}: {path}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load, override and validate. Relative adapter paths are resolved against the config's folder."""
    raw: dict[str, Any] = {}
    origin = "<defaults>"
    if path is not None:
        file = resolve_config_path(str(path))
        origin = str(file)
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{origin}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: top level must be a mapping of sections")
        raw = loaded or {}
        _resolve_relative_paths(raw, file.parent)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(origin, err)) from None


def _resolve_relative_paths(raw: dict[str, Any], base: Path) -> None:
    # Adapters and data files named in a config live next to it; run_dir stays relative to the caller.
    def fix(section: Any, key: str) -> None:
        if isinstance(section, dict) and isinstance(section.get(key), str):
            value = section[key]
            if not Path(value).is_absolute() and (base / value).exists():
                section[key] = str((base / value).resolve())

    fix(raw.get("model"), "adapter")
    warmup = raw.get("warmup")
    if isinstance(warmup, dict) and isinstance(warmup.get("output"), str) and not Path(warmup["output"]).is_absolute():
        warmup["output"] = str((base / warmup["output"]).resolve())  # written, so it need not exist yet
    data = raw.get("data")
    if isinstance(data, dict):
        for split in ("train", "eval"):
            fix(data.get(split), "path")
    rl = raw.get("rl")
    if isinstance(rl, dict):
        fix(rl.get("data"), "path")


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

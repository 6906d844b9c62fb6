"""GPU smoke: the whole InT pipeline on one CUDA device, with per-stage wall time and tokens/s.

    scripts/gpu_smoke.sh [OUT_DIR]          # on the GPU machine (installs carried wheels first)
    python scripts/gpu_smoke.py --device cpu --quick --out /tmp/smoke   # the same path, CPU-sized

1. `lab pretrain`: the lab model (a small Qwen3 with a byte-level chat tokenizer, trained from
   random weights on the arithmetic family) on the device, so the pipeline has a partly competent
   policy without bringing any model along;
2. sample -> eval(base) -> propose (oracle proposer: the lab model was never taught to verify) ->
   filter -> SFT -> a short GRPO -> eval(rl), each stage timed, in bf16 on CUDA;
3. generation throughput of the HF engine on a random-weight model of SmolLM2-135M's shape
   (128-token prompts, 256 new tokens), next to plain `model.generate` on the same batch.

Prints a table and writes OUT/gpu_smoke.json. Exit status 1 when a stage fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

# 32,000 problems x 1 epoch (250 steps) leaves the lab model right about 60% of the time (measured on
# an H100, bench/results/gpu_smoke_h100.json): failed rollouts to intervene on and continuations
# that can succeed. 782 steps made it ~100% right (nothing to intervene on), 63 steps ~3%.
FULL = dict(
    pretrain=dict(
        examples=32000,
        hidden_size=256,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        head_dim=64,
        batch_size=128,
        epochs=1,
    ),
    train_size=256,
    eval_size=128,
    sample_n=8,
    batch_size=256,
    max_attempts=256,
    filter_n=8,
    rl_steps=8,
    rl_prompts=16,
    throughput_batches=(32, 128),
    throughput_shape="smollm2",
)
QUICK = dict(
    pretrain=dict(
        examples=1500, hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=64, batch_size=32, epochs=1
    ),
    train_size=16,
    eval_size=8,
    sample_n=4,
    batch_size=32,
    max_attempts=16,
    filter_n=4,
    rl_steps=2,
    rl_prompts=4,
    throughput_batches=(4,),
    throughput_shape="tiny",  # a random 135M model is slow on a CPU, and denormals make it slower
)


def smoke_config(out: Path, device: str, sizes: dict[str, Any]):
    from intrain.config import Config

    family = {"kind": "arithmetic", "steps": [2, 3], "max_operand": 10, "max_result": 50}
    run_dir = out / "run"
    return Config.model_validate(
        {
            "model": {
                "path": str(run_dir / "lab-model" / "model"),
                "device": device,
                "batch_size": sizes["batch_size"],
            },
            "data": {
                "train": {**family, "size": sizes["train_size"], "seed": 21},
                "eval": {**family, "size": sizes["eval_size"], "seed": 2},
                "prompt_template": "{problem}\nPut your final answer within \\boxed{}.",
            },
            "sample": {"n": sizes["sample_n"], "max_tokens": 160, "shard_size": 1024},
            "propose": {"n": 1, "proposer": {"kind": "oracle"}, "max_attempts": sizes["max_attempts"]},
            "filter": {"n": sizes["filter_n"], "wave_size": sizes["filter_n"], "max_tokens": 160, "shard_size": 1024},
            "sft": {"learning_rate": 1e-4, "epochs": 2, "effective_batch_size": 16, "per_device_batch_size": 16},
            "rl": {
                "enabled": True,
                "steps": sizes["rl_steps"],
                "prompts_per_step": sizes["rl_prompts"],
                "group_size": 8,
                "per_device_batch_size": 32 if sizes["rl_prompts"] * 8 % 32 == 0 else 8,
                "learning_rate": 1e-5,
                "max_completion_tokens": 160,
                "use_vllm": "never",
                "save_steps": 1000,
            },
            "eval": {"n": 8, "ks": [1, 8], "max_tokens": 160},
            "lab": {"pretrain": sizes["pretrain"]},
            "grading": {"workers": 4},
            "output": {"run_dir": str(run_dir)},
        }
    )


def timed(rows: list[dict[str, Any]], name: str, fn, tokens=None, **extra):
    t0 = time.time()
    result = fn()
    wall = time.time() - t0
    n_tokens = tokens(result) if tokens else None
    rows.append(
        dict(stage=name, wall_s=round(wall, 1), tokens=n_tokens, tok_s=round(n_tokens / wall) if n_tokens else None)
        | extra
    )
    print(f"[smoke] {name}: {rows[-1]}", flush=True)
    return result


def completion_tokens(stage) -> int:
    from intrain.records import Rollout

    return sum(r.completion_tokens for r in stage.records(Rollout))


def pipeline(cfg, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from intrain.lab import pretrain
    from intrain.stages import evaluate, propose, rl, sample, sft
    from intrain.stages import filter as filter_stage
    from intrain.stages.common import RunContext

    run_dir = Path(cfg.output.run_dir)
    report = timed(rows, "lab pretrain", lambda: pretrain.run(cfg, run_dir))
    rows[-1].update(steps=report["steps"], last_loss=round(report["last_loss"], 3), params=report["parameters"])
    ctx = RunContext(cfg, run_dir)
    try:
        sampled = timed(rows, "sample", lambda: sample.run(ctx), completion_tokens)
        rows[-1].update(sampled.counts())
        base = timed(rows, "eval base", lambda: evaluate.run(ctx, label="base"), completion_tokens)
        proposed = timed(rows, "propose (oracle)", lambda: propose.run(ctx))
        rows[-1].update(proposed.counts())
        filtered = timed(rows, "filter", lambda: filter_stage.run(ctx))
        rows[-1].update(filtered.counts())
        trained = timed(rows, "sft", lambda: sft.run(ctx))
        rows[-1].update(trained.counts())
        checkpoint = sft.trained_model(trained)
        rl_stage = timed(rows, "rl", lambda: rl.run(ctx, label="rl", init_model=checkpoint))
        counts = rl_stage.counts()
        rows[-1].update(s_per_step=round(rows[-1]["wall_s"] / max(1, counts["steps"]), 2), **counts)
        final = timed(
            rows,
            "eval rl",
            lambda: evaluate.run(ctx, label="rl", model_path=rl.trained_model(rl_stage)),
            completion_tokens,
        )
        return {
            "base": json.loads((base.path / "eval.json").read_text()),
            "rl": json.loads((final.path / "eval.json").read_text()),
        }
    finally:
        ctx.close()


def throughput(out: Path, device: str, sizes: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """HF engine vs plain generate on a random SmolLM2-shaped model (bf16 on CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM

    from intrain.data.arithmetic import generate_arithmetic
    from intrain.engines.base import Request, SamplingParams
    from intrain.engines.hf import HFGenerator
    from intrain.lab.tiny_model import SMOLLM2_135M_SHAPE, Shape, build_model, build_tokenizer

    texts = [p.problem + "\n\n" + (p.reference_solution or "") for p in generate_arithmetic(400, seed=5)]
    folder = out / f"{sizes['throughput_shape']}-shape"
    shape = SMOLLM2_135M_SHAPE if sizes["throughput_shape"] == "smollm2" else Shape(head_dim=64)
    build_model(folder, build_tokenizer(texts, 1024), shape)
    dtype = "bfloat16" if device == "cuda" else "float32"
    new_tokens = 256
    for batch in sizes["throughput_batches"]:
        engine = HFGenerator.load(str(folder), device=device, dtype=dtype, batch_size=batch)
        tok = engine.tokenizer
        # Distinct 128-token prompts: identical ones would share one prefill and flatter the engine.
        corpus_ids = tok(" ".join(texts))["input_ids"]
        prompts = [tok.decode(corpus_ids[i * 7 : i * 7 + 128]) for i in range(batch)]
        requests = [Request(prompt=p) for p in prompts]
        params = SamplingParams(temperature=1.0, max_tokens=new_tokens, seed=0)
        # Both paths are warmed up alike (full batch, a few tokens) before they are timed.
        engine.generate(requests, SamplingParams(temperature=1.0, max_tokens=16))
        timed(
            rows,
            f"hf engine, batch {batch}",
            lambda engine=engine, requests=requests, params=params: engine.generate(requests, params),
            lambda outs: sum(len(c.token_ids) for cs in outs for c in cs),
        )
        del engine
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, dtype)).to(device)
        tok.padding_side = "left"
        ids = tok(prompts, return_tensors="pt", padding=True).to(device)

        def plain(model=model, ids=ids):
            out_ids = model.generate(
                **ids, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens
            )
            return (out_ids.shape[0]) * (out_ids.shape[1] - ids["input_ids"].shape[1])

        model.generate(**ids, do_sample=True, max_new_tokens=16)
        timed(rows, f"plain generate, batch {batch}", plain, lambda n: n)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers
    import trl

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "device": device,
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| stage | wall s | tokens | tok/s | notes |\n| --- | ---: | ---: | ---: | --- |")
    for r in rows:
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("stage", "wall_s", "tokens", "tok_s"))
        print(f"| {r['stage']} | {r['wall_s']} | {r['tokens'] or ''} | {r['tok_s'] or ''} | {notes} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu-smoke", help="output folder (run, models, gpu_smoke.json)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="CPU-sized run of the same path")
    parser.add_argument(
        "--pretrain-examples",
        type=int,
        help="lab model's training problems (fewer = a weaker policy, more failed rollouts to intervene on)",
    )
    parser.add_argument("--pretrain-epochs", type=float, help="lab model's epochs")
    parser.add_argument("--skip-throughput", action="store_true", help="only the pipeline")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = dict(QUICK if args.quick else FULL)
    sizes["pretrain"] = dict(sizes["pretrain"])
    if args.pretrain_examples:
        sizes["pretrain"]["examples"] = args.pretrain_examples
    if args.pretrain_epochs:
        sizes["pretrain"]["epochs"] = args.pretrain_epochs
    result: dict[str, Any] = {"environment": environment(args.device), "stages": []}
    print(f"[smoke] {result['environment']}", flush=True)
    rows: list[dict[str, Any]] = result["stages"]
    status = 0
    t0 = time.time()
    try:
        result["eval"] = pipeline(smoke_config(out, args.device, sizes), rows)
        if not args.skip_throughput:
            throughput(out, args.device, sizes, rows)
    except Exception as exc:  # report what ran, then fail
        import traceback

        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    result["total_s"] = round(time.time() - t0, 1)
    (out / "gpu_smoke.json").write_text(json.dumps(result, indent=2, default=str))
    print_table(rows)
    for label, metrics in result.get("eval", {}).items():
        print(f"eval {label}: {json.dumps(metrics, default=str)[:300]}")
    print(f"total {result['total_s']} s; {out / 'gpu_smoke.json'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())

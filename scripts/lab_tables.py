"""The lab's Tables 2 and 4 and the oracle dose-response on the lab model, every RL run at once.

    python scripts/lab_tables.py run --out OUT [--device cuda]         # from scratch (H200: 9 minutes)
    python scripts/lab_tables.py run --lab-model M --hard-train F --hard-eval F --out OUT --quick --device cpu
    python scripts/lab_tables.py run ... --tables table4 --rl-steps 100 --rl-lr 1e-4  # a part, longer RL
    python scripts/lab_tables.py run ... --work W --resume --tables table2  # reuse W's finished jobs, add Table 2
    python scripts/lab_tables.py gather OUT [--work W]                 # the tables again from finished jobs
    python scripts/lab_tables.py report OUT                            # OUT/lab_tables.md, anywhere

Every run below is an ordinary intrain run directory; this script only fans them out as processes (one
GPU holds dozens of 2.5M-parameter runs) and gathers them:

0. lab (without --lab-model): `intrain lab pretrain` and `intrain lab hard-split` with the packaged
   `lab-tiny` config, its train and eval candidates widened to 2,048 problems each (all left out of
   pretraining): the lab model and the problems it fails on all of 8 samples;
1. prep: sample the hard training problems and evaluate the policy on the hard held-out problems;
2. variants, one process each in a copy of the prep run: InT with the oracle at location noise 0 (the
   `int` arm), 0.25, 0.5 and 0.75 (dose-response); the Table 2 ablations (filter off; the intervention
   alone; prefix + intervention + correct suffix); SFT on reference solutions. Each SFT checkpoint is
   evaluated too;
3. RL: every (variant, arm, seed) in its own copy: `intrain compare` for that arm and seed (GRPO from
   the variant's checkpoint, then eval), in parallel; plus plain RL on the easy (unfiltered) split, to
   show that this RL budget moves the reward where there is signal;
4. gather: each table's arms are copied into one run and `compare` summarises them from the jobs' own
   compare.json (pass@k, paired bootstrap CIs against `rl`, RL curves). It reads records only, so
   `gather` can redo it anywhere on a work folder whose run was cut short, over the jobs that finished.

`--tables` picks what steps 2 and 3 make: table4, table2, dose, precision, easy (default: all). Table 4's
runs are always made: the other tables compare against its `rl` arm. `--rl-steps`/`--rl-lr` set every
RL run's budget (the easy split keeps its own lrs). `--resume` keeps the work folder and reuses each job
that finished there with the very spec it would be given now (same config, same source job, itself
reused), so a run cut short, or one that adds tables, does only the missing work; `gather` then counts
every finished job in the folder.

Each process runs in its own folder with the relative run dir `run`, so checkpoint paths, and with them
the stages' fingerprints, are the same in every copy. Writes OUT/lab_tables.md, OUT/lab_tables.json and
OUT/lab_runs.tar.gz (every gathered run without its model weights).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

FAMILY = {"kind": "arithmetic", "steps": [2, 3], "max_operand": 10, "max_result": 50}
FULL = dict(
    batch_size=256,
    sample_n=8,
    eval_n=16,
    ks=[1, 4, 16],
    max_attempts=1024,
    filter_n=8,
    sft_lr=5e-5,
    rl_lr=5e-5,
    rl_steps=30,
    rl_prompts=16,
    seeds=[0, 1, 2],
    dose_seeds=[0, 1],
    table2_seeds=[0],
    easy_size=1024,
    candidates=2048,
    split_batch_size=1024,
    easy_lrs=[2e-5, 5e-5, 1e-4],
    precision_attempts=200,
    jobs=24,
)
QUICK = dict(
    FULL,
    batch_size=32,
    sample_n=4,
    eval_n=4,
    ks=[1, 4],
    max_attempts=16,
    filter_n=4,
    rl_steps=2,
    rl_prompts=4,
    seeds=[0, 1],
    dose_seeds=[0],
    table2_seeds=[0],
    easy_size=8,
    candidates=16,
    split_batch_size=32,
    easy_lrs=[2e-5],
    precision_attempts=8,
    jobs=2,
)
QUICK_PRETRAIN = dict(examples=300, hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, batch_size=32)
# Which variants each table needs besides `main` (Table 4's arms), for `run --tables`.
TABLES: dict[str, tuple[str, ...]] = {
    "table4": (),
    "table2": ("t2-nofilter", "t2-intervention", "t2-suffix"),
    "dose": ("noise0.25", "noise0.5", "noise0.75"),
    "precision": ("noise0.5",),
    "easy": (),
}
# Variant -> config overrides (dotted paths) on top of the main config; the `int` arm of each.
VARIANTS: dict[str, dict[str, Any]] = {
    "noise0.25": {"propose.proposer.location_noise": 0.25},
    "noise0.5": {"propose.proposer.location_noise": 0.5},
    "noise0.75": {"propose.proposer.location_noise": 0.75},
    "t2-nofilter": {"filter.enabled": False},
    "t2-intervention": {"sft.target": "intervention"},
    "t2-suffix": {"sft.target": "prefix_intervention_suffix"},
}


def base_config(args: argparse.Namespace, sizes: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {
            "path": str(Path(args.lab_model).resolve()),
            "device": args.device,
            "batch_size": sizes["batch_size"],
        },
        "data": {
            "train": {"kind": "file", "path": str(Path(args.hard_train).resolve())},
            "eval": {"kind": "file", "path": str(Path(args.hard_eval).resolve())},
            "prompt_template": "{problem}\nPut your final answer within \\boxed{}.",
        },
        "sample": {"n": sizes["sample_n"], "max_tokens": 160, "shard_size": 4096},
        "propose": {"n": 1, "proposer": {"kind": "oracle"}, "max_attempts": sizes["max_attempts"]},
        "filter": {"n": sizes["filter_n"], "wave_size": sizes["filter_n"], "max_tokens": 160, "shard_size": 4096},
        "sft": {"learning_rate": sizes["sft_lr"], "epochs": 2, "effective_batch_size": 16, "per_device_batch_size": 16},
        "rl": {
            "steps": sizes["rl_steps"],
            "prompts_per_step": sizes["rl_prompts"],
            "group_size": 8,
            "per_device_batch_size": 32 if sizes["rl_prompts"] * 8 % 32 == 0 else 8,
            "learning_rate": sizes["rl_lr"],
            "max_completion_tokens": 160,
            "use_vllm": "never",
            "save_steps": 1000,
        },
        "eval": {"n": sizes["eval_n"], "ks": sizes["ks"], "max_tokens": 160, "shard_size": 4096},
        "grading": {"workers": 1},
        "output": {"run_dir": "run"},
    }


def with_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


# ---- worker: one process, one run folder -------------------------------------------------------


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    os.chdir(spec["folder"])
    from intrain import compare
    from intrain.config import Config
    from intrain.stages import evaluate, sample
    from intrain.stages.common import RunContext

    config = Config.model_validate(spec["config"])
    ctx = RunContext(config, Path("run"))
    try:
        if spec["action"] == "lab":
            from intrain.lab import hard_split, pretrain

            pretrain.run(config, ctx.run_dir)
            hard_split.run(ctx)
        elif spec["action"] == "prep":
            sample.run(ctx)
            evaluate.run(ctx, label="base")
        elif spec["action"] == "init":  # each arm's starting checkpoint, and its eval before RL
            for arm in spec["arms"]:
                init, _ = compare.prepare_init(ctx, arm)
                if init:
                    evaluate.run(ctx, label=f"{arm}-sft", model_path=init)
        elif spec["action"] == "compare":
            compare.run(ctx, spec["arms"])
        elif spec["action"] == "precision":
            from intrain.lab import filter_precision

            filter_precision.run(ctx)
        else:
            raise ValueError(f"unknown action {spec['action']!r}")
    finally:
        ctx.close()
    Path("done").write_text("ok\n")
    return 0


# ---- orchestrator ------------------------------------------------------------------------------


class Jobs:
    """Worker processes, at most `limit` at a time, each with its log in its folder. With `resume`, a job
    whose folder holds `done` and the same spec, made from a source job that was itself reused, is
    reused as it is instead of run again."""

    def __init__(self, work: Path, limit: int, resume: bool = False):
        self.work, self.limit, self.resume = work, limit, resume
        self.wall_s: dict[str, float] = {}
        self.reused: list[str] = []

    def place(self, spec: dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Give `spec` its folder: a copy of `source`'s run, or an empty run; or, resuming, the folder
        as a finished earlier run left it."""
        folder = self.work / spec["name"]
        spec["folder"] = str(folder)
        source_reused = source is None or source["name"] in self.reused
        if self.resume and source_reused and (folder / "done").exists() and self._same_spec(folder, spec):
            self.reused.append(spec["name"])
            return spec
        shutil.rmtree(folder, ignore_errors=True)
        if source is not None:
            shutil.copytree(Path(source["folder"]) / "run", folder / "run", symlinks=True)
        else:
            (folder / "run").mkdir(parents=True)
        return spec

    @staticmethod
    def _same_spec(folder: Path, spec: dict[str, Any]) -> bool:
        # Paths inside the work folder compare relative to it, so a moved work folder still resumes.
        def portable(spec: dict[str, Any]) -> str:
            return json.dumps(spec, sort_keys=True).replace(str(Path(spec["folder"]).parent), "<work>")

        return portable(json.loads((folder / "spec.json").read_text())) == portable(spec)

    def run(self, specs: list[dict[str, Any]], phase: str, deadline: float) -> list[dict[str, Any]]:
        """Run `specs`; whatever still runs at `deadline` (time.time()) is killed and counts as failed."""
        t0 = time.time()
        finished = [spec | {"ok": True} for spec in specs if spec["name"] in self.reused]
        pending, running = [spec for spec in specs if spec["name"] not in self.reused], []
        while pending or running:
            while pending and len(running) < self.limit:
                spec = pending.pop(0)
                spec_file = Path(spec["folder"]) / "spec.json"
                spec_file.write_text(json.dumps(spec))
                log = open(Path(spec["folder"]) / "log.txt", "w")  # noqa: SIM115 (closed when the job ends)
                env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
                proc = subprocess.Popen(
                    [sys.executable, __file__, "worker", str(spec_file)], stdout=log, stderr=subprocess.STDOUT, env=env
                )
                running.append((spec, proc, log))
            time.sleep(0.5)
            for item in list(running):
                spec, proc, log = item
                if proc.poll() is None and time.time() < deadline:
                    continue
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                log.close()
                running.remove(item)
                ok = (Path(spec["folder"]) / "done").exists()
                finished.append(spec | {"ok": ok})
                if not ok:
                    tail = (Path(spec["folder"]) / "log.txt").read_text(errors="replace")[-1500:]
                    print(f"[lab] FAILED {spec['name']} (rc {proc.returncode}):\n{tail}", flush=True)
        ok = sum(s["ok"] for s in finished)
        reused = sum(s["name"] in self.reused for s in finished)
        self.wall_s[phase] = round(time.time() - t0, 1)
        print(f"[lab] {phase}: {ok}/{len(finished)} ok ({reused} reused) in {self.wall_s[phase]:.0f} s", flush=True)
        return finished


def copy_stages(source: Path, target: Path, prefixes: tuple[str, ...]) -> None:
    for stage in sorted((source / "run").iterdir()):
        if stage.name.startswith(prefixes) and not (target / "run" / stage.name).exists():
            shutil.copytree(stage, target / "run" / stage.name, symlinks=True)


def gather(work: Path, result: dict[str, Any]) -> None:
    """One run per table in WORK/gather-<variant>: the variant's starting run plus the stages of every
    finished RL job of its arms (and plain RL's), summarised by `compare` from the jobs' own
    compare.json. Reads records only (no model, no device), so it runs anywhere the work folder is."""
    from intrain import compare
    from intrain.config import Config
    from intrain.lab.filter_precision import kept_by_placement
    from intrain.records import FilterResult
    from intrain.stages.common import RunContext
    from intrain.store import read_stage_records

    specs = [json.loads(p.read_text()) for p in sorted(work.glob("*/spec.json"))]
    finished = [s for s in specs if (work / s["name"] / "done").exists()]
    result["failed"] = [s["name"] for s in specs if s not in finished]
    rl_jobs = [s for s in finished if s["action"] == "compare" and "variant" in s]
    for init in (s for s in finished if s["action"] == "init"):
        variant = init["name"].removeprefix("init-")
        arms = ["rl", "sft_reference", "int"] if variant == "main" else ["rl", "int"]
        jobs = [s for s in rl_jobs if s["arm"] in arms and (s["arm"] == "rl" or s["variant"] == variant)]
        if not any(job["arm"] != "rl" for job in jobs):  # plain RL alone is no table
            continue
        gathered = work / f"gather-{variant}"
        if gathered.exists():
            shutil.rmtree(gathered)
        shutil.copytree(work / init["name"] / "run", gathered / "run", symlinks=True)
        for job in jobs:
            copy_stages(work / job["name"], gathered, (f"rl-{job['arm']}-", f"eval-{job['arm']}-"))
        table = compare.merge_tables(
            [json.loads((work / job["name"] / "run" / "compare.json").read_text())["arms"] for job in jobs]
        )
        ctx = RunContext(Config.model_validate(init["config"]), gathered / "run")
        try:
            summary = compare.write_table(ctx, table)
        finally:
            ctx.close()
        filtered = read_stage_records(gathered / "run", "filter", FilterResult)
        result["tables"][variant] = summary | {
            "_counts": stage_counts(gathered / "run"),
            "_placement": kept_by_placement(filtered, ctx.config.propose.separator),
        }
    result["easy_rl"] = {
        s["lr"]: easy_rl_curve(work / s["name"] / "run", s["config"]["eval"]["ks"][-1]) for s in finished if "lr" in s
    }
    precision = work / "precision" / "run" / "lab-filter-precision" / "filter_precision.json"
    if precision.exists():
        result["filter_precision"] = json.loads(precision.read_text())


def orchestrate(args: argparse.Namespace) -> int:
    sizes = dict(QUICK if args.quick else FULL)
    if args.jobs:
        sizes["jobs"] = args.jobs
    if args.rl_steps:
        sizes["rl_steps"] = args.rl_steps
    if args.rl_lr:
        sizes["rl_lr"] = args.rl_lr
    if args.dose_seeds:
        sizes["dose_seeds"] = args.dose_seeds
    if args.table2_seeds:
        sizes["table2_seeds"] = args.table2_seeds
    wanted = set(args.tables)
    variants = [v for v in VARIANTS if any(v in TABLES[t] for t in wanted)]
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out / "work"
    if work.exists() and not args.resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    jobs = Jobs(work, sizes["jobs"], resume=args.resume)
    deadline = t_start + args.budget_s
    result: dict[str, Any] = {"sizes": sizes, "wall_s": jobs.wall_s, "tables": {}, "failed": [], "reused": jobs.reused}
    result["environment"] = environment(args.device)
    if args.lab_model is None:
        from intrain.config import load_config

        lab_run = work / "lab" / "run"
        config = load_config("lab-tiny").model_dump(mode="json")
        config = with_overrides(
            config,
            {
                "model.path": str(lab_run / "lab-model" / "model"),
                "model.device": args.device,
                "model.batch_size": sizes["split_batch_size"],
                "data.train.size": sizes["candidates"],
                "data.eval.size": sizes["candidates"],
                "output.run_dir": "run",
            },
        )
        if args.quick:
            config["lab"]["pretrain"] |= QUICK_PRETRAIN
        lab_spec = jobs.place({"name": "lab", "action": "lab", "config": config})
        lab = jobs.run([lab_spec], "lab", deadline)
        if not lab[0]["ok"]:
            return 1
        args.lab_model = str(lab_run / "lab-model" / "model")
        args.hard_train, args.hard_eval = (str(lab_run / f"lab-hard-{s}" / "hard.jsonl") for s in ("train", "eval"))
        result["lab"] = {
            "pretrain": json.loads((lab_run / "lab-model" / "pretrain_report.json").read_text()),
            "hard_split": {
                s: json.loads((lab_run / f"lab-hard-{s}" / "manifest.json").read_text())["counts"]
                for s in ("train", "eval")
            },
        }
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out / "lab_model.tar.gz", "w:gz") as tar:
            tar.add(lab_run / "lab-model", arcname="lab-model")
            for s in ("train", "eval"):
                tar.add(lab_run / f"lab-hard-{s}" / "hard.jsonl", arcname=f"hard-{s}.jsonl")
        save_result(out, result)
    main_config = base_config(args, sizes)
    configs = {"main": main_config} | {v: with_overrides(main_config, o) for v, o in VARIANTS.items()}
    easy = with_overrides(
        main_config,
        {
            # hard-split's candidates (left out of the lab model's pretraining), all of them
            "data.train": {**FAMILY, "size": sizes["easy_size"], "seed": 21},
            "data.eval": {**FAMILY, "size": min(256, sizes["easy_size"]), "seed": 2},
        },
    )

    # 1. prep
    prep = jobs.place({"name": "prep", "action": "prep", "config": main_config})
    phase1 = jobs.run([prep], "prep", deadline)
    if not phase1[0]["ok"]:
        return 1

    # 2. starting checkpoints, one process per variant
    inits = [{"name": "init-main", "action": "init", "arms": ["sft_reference", "int"], "config": main_config}]
    inits += [{"name": f"init-{v}", "action": "init", "arms": ["int"], "config": configs[v]} for v in variants]
    for spec in inits:
        jobs.place(spec, source=prep)
    ready = {s["name"].removeprefix("init-"): s for s in jobs.run(inits, "init", deadline) if s["ok"]}

    # 3. RL for every (variant, arm, seed), and the easy split's plain RL (sample, eval, RL, eval)
    runs: list[dict[str, Any]] = []
    for lr in sizes["easy_lrs"] if "easy" in wanted else []:
        name = f"easy-rl-lr{lr:g}"
        config = with_overrides(easy, {"compare.seeds": [0], "rl.learning_rate": lr})
        runs.append(jobs.place({"name": name, "action": "compare", "arms": ["rl"], "lr": lr, "config": config}))
    # filter precision: the 0.5-noise oracle's candidates, each continued 32 times
    if "precision" in wanted and "noise0.5" in ready:
        config = with_overrides(configs["noise0.5"], {"lab.attempts": sizes["precision_attempts"]})
        runs.append(jobs.place({"name": "precision", "action": "precision", "config": config}, ready["noise0.5"]))
    for variant, init in ready.items():
        if variant == "main":
            arms = [("rl", prep), ("sft_reference", init), ("int", init)]
            seeds = sizes["seeds"]
        else:
            dose = variant.startswith("noise")
            if ("dose" if dose else "table2") not in wanted:  # noise0.5 made for filter precision only
                continue
            arms = [("int", init)]
            seeds = sizes["dose_seeds"] if dose else sizes["table2_seeds"]
        for arm, source in arms:
            for seed in seeds:
                config = with_overrides(configs[variant], {"compare.seeds": [seed]})
                name = f"rl-{variant}-{arm}-s{seed}"
                spec = {"name": name, "action": "compare", "arms": [arm], "config": config}
                runs.append(jobs.place(spec | {"variant": variant, "arm": arm, "seed": seed}, source))
    jobs.run(runs, "rl", deadline)
    save_result(out, result)

    # 4. gather (reads what the jobs left on disk, so `gather` can redo it on a run that was cut short)
    t0 = time.time()
    gather(work, result)
    result["wall_s"]["gather"] = round(time.time() - t0, 1)
    result["wall_s"]["total"] = round(time.time() - t_start, 1)
    save_result(out, result)
    archive_and_report(work, out)
    print(f"[lab] total {result['wall_s']['total']} s; {out / 'lab_tables.md'}", flush=True)
    return 0


def save_result(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "lab_tables.json").write_text(json.dumps(result, indent=2, default=str))


def regather(out: Path, work: Path) -> int:
    """`gather OUT`: the tables again from the jobs that finished, e.g. after the run was cut short."""
    result = json.loads((out / "lab_tables.json").read_text())
    result["tables"] = {}
    gather(work, result)
    save_result(out, result)
    archive_and_report(work, out)
    print(f"[lab] gathered {', '.join(result['tables']) or 'nothing'}; failed: {result['failed']}", flush=True)
    return 0


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers
    import trl

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    env["cpus"] = os.cpu_count()
    return env


def stage_counts(run: Path) -> dict[str, Any]:
    return {
        m.parent.name: json.loads(m.read_text()).get("counts")
        for m in sorted(run.glob("*/manifest.json"))
        if m.parent.name in ("sample", "propose", "filter", "sft", "sft-reference", "eval-base")
    }


def easy_rl_curve(run: Path, k_max: int) -> dict[str, Any]:
    """Plain RL's training reward over its steps on the easy split, and held-out pass@k before and after."""
    from intrain.compare import per_problem_pass_at_k
    from intrain.stages import rl
    from intrain.stats import bootstrap_difference, paired_bootstrap_difference

    log = rl.read_log(run / "rl-rl-s0" / rl.LOG_NAME)
    rewards = [row.get("reward") or 0.0 for row in log]
    quarter = max(1, len(rewards) // 4)
    summary = json.loads((run / "compare.json").read_text())["summary"]
    return {
        "steps": len(rewards),
        "reward": rewards,
        "reward_first_quarter": sum(rewards[:quarter]) / quarter,
        "reward_last_quarter": sum(rewards[-quarter:]) / quarter,
        # each step draws new prompts, so the steps of a quarter are independent samples of the reward
        "reward_last_minus_first_quarter": bootstrap_difference(rewards[-quarter:], rewards[:quarter]),
        "eval_pass@1": {arm: summary[arm]["pass@1"][0] for arm in ("base", "rl")},
        # after RL minus before, paired over the held-out problems
        "eval_delta": {
            f"pass@{k}": paired_bootstrap_difference(
                per_problem_pass_at_k(run, ["eval-rl-s0"], k), per_problem_pass_at_k(run, ["eval-base"], k)
            )
            for k in (1, k_max)
        },
    }


def archive_and_report(work: Path, out: Path) -> None:
    archive(work, out / "lab_runs.tar.gz")
    shutil.rmtree(out / "runs", ignore_errors=True)  # report() reads the runs from the new archive
    report(out)


def archive(work: Path, target: Path) -> None:
    """Every gathered run, each variant's starting run and the easy RL runs, without model weights or
    checkpoints."""

    def skip_weights(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if "model" in parts or "checkpoints" in parts else info

    with tarfile.open(target, "w:gz") as tar:
        folders = [*sorted(work.glob("gather-*")), *sorted(work.glob("init-*")), *sorted(work.glob("easy-rl-*"))]
        for folder in [*folders, work / "precision"]:
            if folder.exists():
                tar.add(folder / "run", arcname=folder.name, filter=skip_weights)


# ---- report: the tables from OUT (run anywhere, no model needed) ---------------------------------


def report(out: Path) -> str:
    """OUT/lab_tables.md from OUT/lab_tables.json and the gathered runs in OUT/lab_runs.tar.gz."""
    from intrain.compare import compare_markdown, per_problem_pass_at_k
    from intrain.stats import bootstrap_mean_interval, paired_bootstrap_difference

    result = json.loads((out / "lab_tables.json").read_text())
    runs = out / "runs"
    if not runs.exists():
        with tarfile.open(out / "lab_runs.tar.gz") as tar:
            tar.extractall(runs, filter="data")
    ks = result["sizes"]["ks"]
    lines = [f"Sizes: {json.dumps(result['sizes'])}", f"Wall s per phase: {json.dumps(result['wall_s'])}", ""]
    if result.get("reused"):
        lines += [f"Jobs reused from an earlier run in the same work folder: {', '.join(result['reused'])}", ""]
    if result.get("failed"):
        lines += [f"Jobs that failed or ran out of time: {', '.join(result['failed'])}", ""]
    tables = result["tables"]
    if "main" in tables:
        main = {k: v for k, v in tables["main"].items() if not k.startswith("_")}
        lines += ["## Table 4 (hard split)", "", compare_markdown(main, ks), _counts_line(tables["main"]), ""]

    def per_problem(variant: str, arm: str, k: int, when: str = "rl") -> dict[str, float]:
        run = runs / f"gather-{variant}"
        if not run.exists():  # its RL did not finish: the starting run alone
            run = runs / f"init-{variant}"
        if when == "sft":
            names = [f"eval-{arm}-sft"]
        else:
            names = [p.name for p in sorted(run.glob(f"eval-{arm}-s[0-9]*"))]
        names = [n for n in names if (run / n / "manifest.json").exists()]
        return per_problem_pass_at_k(run, names, k) if names else {}

    def cell(values: dict[str, float]) -> str:
        if not values:
            return "-"
        mean = sum(values.values()) / len(values)
        lo, hi = bootstrap_mean_interval(list(values.values()))
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"

    def diff(a: dict[str, float], b: dict[str, float]) -> str:
        if not a or not b:
            return "-"
        d, lo, hi = paired_bootstrap_difference(a, b)
        return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    k_lo, k_hi = ks[0], ks[-1]
    rows = [("int (noise 0)", "main")] + [(f"noise {v[5:]}", v) for v in VARIANTS if v.startswith("noise")]
    rows += [(v, v) for v in VARIANTS if v.startswith("t2-")]
    header = (
        f"| variant | RL seeds | kept / interventions | SFT rows | pass@{k_lo} after SFT "
        f"| Δ pass@{k_lo} after SFT vs int (noise 0) | pass@{k_lo} after RL | pass@{k_hi} after RL "
        f"| Δ pass@{k_lo} vs rl | Δ pass@{k_lo} vs int (noise 0) |"
    )
    lines += ["## Dose-response and Table 2 (the `int` arm of each variant)", "", header, "|" + "---|" * 10]
    reference, reference_sft = per_problem("main", "int", k_lo), per_problem("main", "int", k_lo, "sft")
    control = per_problem("main", "rl", k_lo)
    for label, variant in rows:
        if variant in tables and "int" in tables[variant]:
            counts, seeds = tables[variant]["_counts"], ",".join(map(str, tables[variant]["int"]["seeds"]))
        elif (runs / f"init-{variant}").exists():
            counts, seeds = stage_counts(runs / f"init-{variant}"), "none finished"
        else:
            lines.append(f"| {label} | not run | | | | | | | | |")
            continue
        filt, sft = counts.get("filter") or {}, counts.get("sft") or {}
        after, after_sft = per_problem(variant, "int", k_lo), per_problem(variant, "int", k_lo, "sft")
        lines.append(
            f"| {label} | {seeds} | {filt.get('kept', '-')} / {filt.get('candidates', '-')} "
            f"| {sft.get('sft_rows', '-')} | {cell(after_sft)} "
            f"| {'-' if variant == 'main' else diff(after_sft, reference_sft)} | {cell(after)} "
            f"| {cell(per_problem(variant, 'int', k_hi))} | {diff(after, control)} "
            f"| {'-' if variant == 'main' else diff(after, reference)} |"
        )
    lines += [
        "",
        "Cells: mean over held-out problems of each problem's pass@k (averaged over seeds), bootstrap 95% "
        "interval over problems; Δ: paired bootstrap over problems.",
    ]
    placed = [
        (label, tables[variant]["_placement"]) for label, variant in rows if "_placement" in tables.get(variant, {})
    ]
    if placed:  # older results (docs/lab/*.json) lack it
        lines += [
            "",
            "Where the interventions sit against the true first error, kept / filtered "
            "(earlier: a correct step replaced; later: the prefix keeps the error):",
            "",
            "| variant | at the error | earlier | later |",
            "|---|---|---|---|",
        ]
        for label, counts in placed:
            cells = " | ".join(f"{counts[w]['kept']} / {counts[w]['candidates']}" for w in ("at", "earlier", "later"))
            lines.append(f"| {label} | {cells} |")
    for lr, easy in result.get("easy_rl", {}).items():
        line = (
            f"\nPlain RL on the easy split, lr {lr} ({easy['steps']} steps): training reward "
            f"{easy['reward_first_quarter']:.3f} in the first quarter of steps, {easy['reward_last_quarter']:.3f} "
            "in the last"
        )
        if "eval_pass@1" in easy:  # older results (docs/lab/*.json) lack these
            line += " ({:+.3f} [{:+.3f}, {:+.3f}])".format(*easy["reward_last_minus_first_quarter"])
            line += "; held-out pass@1 {base:.3f} before, {rl:.3f} after".format(**easy["eval_pass@1"])
            line += "; after - before, paired over problems: " + ", ".join(
                "{} {:+.3f} [{:+.3f}, {:+.3f}]".format(k, *d) for k, d in easy["eval_delta"].items()
            )
        lines.append(line + ".")
    precision = runs / "precision" / "lab-filter-precision" / "filter_precision.md"
    if precision.exists():
        lines += ["", "## Filter precision", "", precision.read_text()]
    text = "\n".join(lines) + "\n"
    (out / "lab_tables.md").write_text(text)
    return text


def _counts_line(table: dict[str, Any]) -> str:
    counts = table["_counts"]
    return "Stages: " + "; ".join(f"{name} {json.dumps(c)}" for name, c in counts.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole experiment")
    run.add_argument("--lab-model", help="the lab model folder (default: pretrain one, step 0)")
    run.add_argument("--hard-train", help="with --lab-model: hard training problems (lab-hard-train/hard.jsonl)")
    run.add_argument("--hard-eval", help="with --lab-model: hard held-out problems (lab-hard-eval/hard.jsonl)")
    run.add_argument("--out", required=True)
    run.add_argument("--work", help="folder for the runs (default OUT/work; emptied first unless --resume)")
    run.add_argument(
        "--resume", action="store_true", help="keep the work folder and reuse every job it holds finished as asked"
    )
    run.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    run.add_argument("--jobs", type=int, help="processes at a time")
    run.add_argument("--budget-s", type=float, default=1e9, help="kill what still runs after this many seconds")
    run.add_argument("--quick", action="store_true", help="CPU-sized")
    run.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES), help="default: all")
    run.add_argument("--rl-steps", type=int, help=f"GRPO steps per RL run (default {FULL['rl_steps']}, quick 2)")
    run.add_argument("--rl-lr", type=float, help=f"GRPO lr of every arm but easy's (default {FULL['rl_lr']:g})")
    run.add_argument(
        "--dose-seeds", type=int, nargs="+", help=f"RL seeds per noise level (default {FULL['dose_seeds']})"
    )
    run.add_argument(
        "--table2-seeds", type=int, nargs="+", help=f"RL seeds per Table 2 variant (default {FULL['table2_seeds']})"
    )
    tables = sub.add_parser("report", help="OUT/lab_tables.md from a finished OUT")
    tables.add_argument("out")
    again = sub.add_parser("gather", help="the tables again from the finished jobs in OUT/work (or --work)")
    again.add_argument("out")
    again.add_argument("--work", help="the run's work folder (default OUT/work)")
    work = sub.add_parser("worker", help="(internal) one process of the experiment")
    work.add_argument("spec")
    args = parser.parse_args()
    if args.command == "report":
        print(report(Path(args.out)))
        return 0
    if args.command == "gather":
        out = Path(args.out).resolve()
        return regather(out, Path(args.work).resolve() if args.work else out / "work")
    return worker(args.spec) if args.command == "worker" else orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())

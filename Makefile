# lmms-holitom — every target does its own setup.
#   make test          ruff + both suites: the main one (offline, both cores, .venv) and the vLLM one (.venv-vllm),
#                      each venv created from its lock if needed
#   make test-main     ruff + the main suite only
#   make demo          a real lmms-eval run of the smoke benchmark, dense vs HoliTom, on a tiny built-in model
#   make lock          re-resolve requirements/lock.txt: the newest versions pyproject.toml's ranges allow
#   make test-floor    the suite on the ranges' floors (requirements/floor.txt over the lock), in .venv-floor
#   make test-latest   the suite on the newest versions the ranges allow (no lock), in .venv-latest; not in CI
#   make test-vllm     the vLLM suite only: tests/vllm_backend (the plugin against the transformers backend, our
#                      pruning methods against vLLM's own) in .venv-vllm, from its lock
#   make vllm-record   re-record the cross-backend fixtures: tests/fixtures/vllm_prune.json (vLLM's selections, in
#                      .venv-vllm) and tests/fixtures/vllm_backends.json (the transformers backend, in .venv)
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

.PHONY: venv test test-main lint demo bench lock test-floor test-latest venv-vllm test-vllm vllm-record clean

$(STAMP): pyproject.toml $(LOCK) tools/venv.sh
	bash tools/venv.sh lock $(VENV)
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check lmms_holitom tests benchmarks task_overrides

test: test-main test-vllm

test-main: venv
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

$(VLLM_STAMP): pyproject.toml requirements/vllm-lock.txt tools/venv.sh tools/torchvision_cpu_shim.py
	bash tools/venv.sh vllm $(VLLM_VENV)
	@touch $(VLLM_STAMP)

venv-vllm: $(VLLM_STAMP)

# the vLLM suite builds its tiny models with the main venv's python (HOLITOM_MAIN_PYTHON), hence `venv`
test-vllm: venv venv-vllm
	HOLITOM_MAIN_PYTHON=$(CURDIR)/$(PY) $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=5 \
		tests/vllm_backend

vllm-record: venv venv-vllm
	$(VLLM_VENV)/bin/python tests/vllm_backend/record_prune.py
	$(PY) tests/vllm_backend/record_backends.py

clean:
	rm -rf $(VENV) .venv-floor .venv-latest .venv-lock $(VLLM_VENV) .pytest_cache .ruff_cache build *.egg-info

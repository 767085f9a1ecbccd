# lmms-holitom — every target does its own setup.
#   make test   the whole test suite (ruff + pytest), creating .venv if needed
#   make demo   a real lmms-eval run of the smoke benchmark, dense vs HoliTom, on a tiny built-in model
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lmms-holitom-installed
# torch/torchvision pair that installs on the project machines (see README "Install").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv test lint demo bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check lmms_holitom tests benchmarks task_overrides

test: venv lint
	$(PY) -m pytest -q tests

demo: venv
	$(PY) -m lmms_holitom.demo

bench: venv
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

# gpulab: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The deploy venv Pulumi uses (Pulumi.yaml: virtualenv: venv): pulumi, pulumi-aws, pydantic, pyyaml. No torch.
DEPLOY_VENV := venv
STACK ?= dev
RUN ?= runs/local

.DEFAULT_GOAL := help
.PHONY: help test lint validate preview up destroy local clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-experiment.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

$(DEPLOY_VENV)/.installed: requirements.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -q -r requirements.txt
	touch $@

test: $(VENV)/.installed ## install the dev venv if needed, then ruff and pytest
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(VENV)/.installed ## ruff only
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

validate: $(DEPLOY_VENV)/.installed ## check Pulumi.<STACK>.yaml offline (no AWS, no Pulumi CLI, no torch)
	$(DEPLOY_VENV)/bin/python -m config validate Pulumi.$(STACK).yaml

preview: ## pulumi preview of the stack (STACK=dev)
	bash scripts/stack.sh preview

up: ## deploy the stack (STACK=dev): validates, generates the Jupyter token if unset, pulumi up
	bash scripts/stack.sh up

destroy: ## tear the instance down; the artifacts bucket is kept (the command says how to delete it)
	bash scripts/stack.sh destroy

local: $(VENV)/.installed ## run the whole experiment on this machine (CPU or local GPU), results in runs/local
	$(PY) -m experiment all --output-dir $(RUN)

clean: ## remove caches (not the venvs, not runs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -not -path './venv/*' -exec rm -rf {} +

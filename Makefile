# cxrwatch: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TRITON_VENV := .venv-triton
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-unit test-faults test-deploy bench lint lock schemas model clean deps

deps: $(VENV)/.installed $(TRITON_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,broker]'
	touch $@

# Triton's wheel pins numpy<2, so the server lives in its own environment.
$(TRITON_VENV)/.installed: scripts/triton/requirements.txt
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q -r scripts/triton/requirements.txt
	touch $@

## run: the whole pipeline on the sample scenario; ONCE=1 replays, prints and exits
run: deps
	$(VENV)/bin/cxrwatch run

## test: unit, integration and end-to-end tests against real servers
test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-faults: deps
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

bench: deps
	$(VENV)/bin/pip install -q -e '.[test,broker,bench]'
	$(PY) -m benchmarks

## test-deploy: render, validate and lint deploy/
test-deploy: $(VENV)/.installed
	$(PY) -m pytest tests/deploy $(PYTEST_ARGS)

## lock: re-pin the images' dependencies (needs uv)
lock: $(VENV)/.installed
	$(VENV)/bin/pip install -q uv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash deploy/docker/lock.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services/cxrwatch

## schemas: regenerate schemas/ from the event models
schemas: $(VENV)/.installed
	$(PY) -m cxrwatch.core.schemas schemas

## model: rebuild models/cxr_fusion from its build script (needs torch)
model:
	$(PYTHON) -m venv .venv-model
	.venv-model/bin/pip install -q -r models/requirements-build.txt
	.venv-model/bin/python models/build.py

clean:
	rm -rf .run test-output

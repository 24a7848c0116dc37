# Habits of this repo. Every target creates .venv and installs what it needs first.
#   make run    the portal on http://127.0.0.1:8501 with an embedded PostgreSQL (data in .data/)
#   make test   every test suite (unit, db, app, e2e) against real PostgreSQL, nginx and Chromium
#   make lint   ruff check, ruff format --check, mypy --strict
#   make bench  the benchmarks in benchmarks/, printed as ratios
#   make pins   rewrite constraints.txt (the exact versions every target installs) from a fresh
#               resolution of pyproject.toml's ranges; then run `make test`

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint bench pins system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.runtime-installed

run: $(VENV)/.runtime-installed
	$(BIN)/portal dev

system-deps:
	@scripts/ensure-system-deps.sh

test: $(VENV)/.dev-installed system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

pins:
	PYTHON=$(PYTHON) scripts/pin-dependencies.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

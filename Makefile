# The two commands a new user needs: `make demo` and `make test`. Both build their own venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit e2e venv lock reliability bench clean

venv: $(STAMP)

$(STAMP): requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.5"
	$(UV) pip install -q -p $(BIN)/python -r requirements/dev.txt
	touch $(STAMP)

lock:
	$(UV) pip compile -q -p 3.11 requirements/dev.in -o requirements/dev.txt

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache output .demo

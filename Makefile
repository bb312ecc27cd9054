# The two commands a new user needs: `make demo` and `make test`. Both build their own venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
# The oldest Airflow pyproject.toml accepts, in a venv of its own (see requirements/floor.in).
FLOOR_VENV ?= .venv-floor
FLOOR_BIN := $(FLOOR_VENV)/bin
FLOOR_STAMP := $(FLOOR_VENV)/.installed

.PHONY: demo test test-floor lint unit e2e venv lock lock-floor reliability bench clean

venv: $(STAMP)

$(STAMP): requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.5"
	$(UV) pip install -q -p $(BIN)/python -r requirements/dev.txt
	touch $(STAMP)

$(FLOOR_STAMP): requirements/floor.txt pyproject.toml
	test -x $(FLOOR_BIN)/python || $(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.5"
	$(FLOOR_BIN)/uv pip install -q -p $(FLOOR_BIN)/python -r requirements/floor.txt
	touch $(FLOOR_STAMP)

lock:
	$(UV) pip compile -q -p 3.11 requirements/dev.in -o requirements/dev.txt

lock-floor:
	$(UV) pip compile -q -p 3.11 requirements/floor.in -o requirements/floor.txt

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	bash scripts/install-test-deps.sh
	$(BIN)/pytest -q -p no:cacheprovider

# The unit tests and one real `airflow dags test` on the oldest supported Airflow. Not part of `test`.
test-floor: $(FLOOR_STAMP)
	$(FLOOR_BIN)/pytest tests/unit tests/integration/test_dags_test.py -q -p no:cacheprovider

# Crash, fault and bad-input trials on real Airflow processes (reliability/run.py), a few minutes.
# Issue 7's full counts: make reliability RELIABILITY_ARGS=--full
reliability: $(STAMP)
	$(BIN)/python -m reliability.run $(RELIABILITY_ARGS)

# The real-Airflow benchmarks of issue 8 (items 1 and 3): about 9 and 8 minutes on two cores. Each prints a
# markdown table and writes benchmarks/results/<name>.json.
bench: $(STAMP)
	$(BIN)/python benchmarks/worker_cost.py
	$(BIN)/python benchmarks/backfill_throughput.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .mypy_cache .ruff_cache .pytest_cache output .demo

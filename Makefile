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
# CeleryExecutor, PostgreSQL and Redis clients on top of the main lock, in a venv of its own (requirements/distributed.in).
DIST_VENV ?= .venv-distributed
DIST_BIN := $(DIST_VENV)/bin
DIST_STAMP := $(DIST_VENV)/.installed

.PHONY: demo test test-floor test-matrix lint docs unit e2e venv lock lock-floor lock-distributed reliability bench clean \
	test-distributed e2e-distributed reliability-distributed

venv: $(STAMP)

$(STAMP): requirements/dev.txt pyproject.toml emulator/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.5"
	$(UV) pip install -q -p $(BIN)/python -r requirements/dev.txt
	touch $(STAMP)

$(FLOOR_STAMP): requirements/floor.txt pyproject.toml emulator/pyproject.toml
	test -x $(FLOOR_BIN)/python || $(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.5"
	$(FLOOR_BIN)/uv pip install -q -p $(FLOOR_BIN)/python -r requirements/floor.txt
	touch $(FLOOR_STAMP)

$(DIST_STAMP): requirements/distributed.txt pyproject.toml emulator/pyproject.toml
	test -x $(DIST_BIN)/python || $(PYTHON) -m venv $(DIST_VENV)
	$(DIST_BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.5"
	$(DIST_BIN)/uv pip install -q -p $(DIST_BIN)/python -r requirements/distributed.txt
	touch $(DIST_STAMP)

lock:
	$(UV) pip compile -q -p 3.11 requirements/dev.in -o requirements/dev.txt

lock-floor:
	$(UV) pip compile -q -p 3.11 requirements/floor.in -o requirements/floor.txt

# Keeps every version dev.txt pins (uv prefers the pins already in the output file; seed it from dev.txt once).
lock-distributed:
	test -f requirements/distributed.txt || cp requirements/dev.txt requirements/distributed.txt
	$(UV) pip compile -q -p 3.11 requirements/distributed.in -o requirements/distributed.txt

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (docs/, Sphinx with MyST markdown and autodoc) into docs/_build/html; any warning fails it.
docs: $(STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

# Every suite on SQLite and LocalExecutor, then the distributed deployment's tests and its short trial.
test: lint docs
	bash scripts/install-test-deps.sh
	$(BIN)/pytest -q -p no:cacheprovider --ignore=tests/distributed
	$(MAKE) test-distributed

# The unit tests and one real `airflow dags test` on the oldest supported Airflow. Not part of `test`.
test-floor: $(FLOOR_STAMP)
	$(FLOOR_BIN)/pytest tests/unit tests/integration/test_dags_test.py -q -p no:cacheprovider

# Every Python the package claims with the built wheel and the newest dependencies, the lowest versions the
# metadata allows, and the sdist's own tests: the unit tests and one real `airflow dags test` per leg (a few
# minutes). Builds and twine-checks the sdist and the wheel; prints the compatibility table. Not part of `test`.
test-matrix: $(STAMP)
	$(BIN)/python scripts/matrix.py

# Crash, fault and bad-input trials on real Airflow processes (reliability/run.py), a few minutes.
# Issue 7's full counts: make reliability RELIABILITY_ARGS=--full
reliability: $(STAMP)
	$(BIN)/python -m reliability.run $(RELIABILITY_ARGS)

# The distributed deployment's part of `make test`: its end-to-end tests, then the short trial (the batch and a
# triggerer kill). The full table of trials: make reliability-distributed RELIABILITY_ARGS=--full
test-distributed: e2e-distributed
	$(MAKE) reliability-distributed RELIABILITY_ARGS=

# A distributed deployment (PostgreSQL, Redis, CeleryExecutor with two workers, two triggerers; harness/distributed.py)
# in .venv-distributed, with Debian's postgresql and redis-server (installed when missing).
e2e-distributed: $(DIST_STAMP)
	bash scripts/install-distributed-deps.sh
	$(DIST_BIN)/pytest tests/distributed -q -p no:cacheprovider

# The distributed trials: the batch and one triggerer kill (CI); every trial: RELIABILITY_ARGS=--full
reliability-distributed: $(DIST_STAMP)
	bash scripts/install-distributed-deps.sh
	$(DIST_BIN)/python -m reliability.run --distributed $(RELIABILITY_ARGS)

# The real-Airflow benchmarks of issue 8 (items 1 and 3): about 9 and 8 minutes on two cores. Each prints a
# markdown table and writes benchmarks/results/<name>.json.
bench: $(STAMP)
	$(BIN)/python benchmarks/worker_cost.py
	$(BIN)/python benchmarks/backfill_throughput.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) $(DIST_VENV) .mypy_cache .ruff_cache .pytest_cache output .demo .matrix docs/_build

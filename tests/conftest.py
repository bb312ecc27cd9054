"""Fixtures shared by every test suite. Keep this file small: suite-specific fixtures live next to the suite."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Airflow reads its home at import: give the test session its own, so no test touches ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="happyhorse-tests-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import pytest

import airflow_provider_happyhorse

if TYPE_CHECKING:
    from happyhorse_emulator import EmulatorServer

# The matrix (scripts/matrix.py) tests the built wheel or sdist: the package must come from site-packages,
# never from the checkout the tests sit in, and the emulator (its own distribution, emulator/) must not be in it.
if os.environ.get("HAPPYHORSE_TEST_INSTALLED"):
    if "site-packages" not in str(airflow_provider_happyhorse.__file__):
        raise RuntimeError(f"expected the installed package, got {airflow_provider_happyhorse.__file__}")
    if importlib.util.find_spec("airflow_provider_happyhorse.emulator") is not None:
        raise RuntimeError("the installed provider contains an emulator package: it belongs to happyhorse-emulator")


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One emulator for the whole session, in a thread, on a free 127.0.0.1 port: the demo defaults, 100 times
    faster (a 5 s clip with sound renders in about 0.4 s instead of 42 s).

    Imported here, not at the top: the unit tests run without the emulator installed (tests/support fakes the
    service at the transport)."""
    from happyhorse_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(speed=0.01)) as server:
        yield server


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated Airflow home (SQLite) for the suites that run the ``airflow`` command line."""
    from support.airflow_cli import migrated_home

    return migrated_home(tmp_path_factory.mktemp("airflow_home"))


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The session emulator with no jobs, zeroed counters and its starting configuration."""
    emulator_server.restore()
    return emulator_server

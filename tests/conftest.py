"""Fixtures shared by every test suite. Keep this file small: suite-specific fixtures live next to the suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_happyhorse.emulator import EmulatorConfig, EmulatorServer

# The emulator as every test sees it: the demo defaults, 100 times faster (a 5 s clip with sound renders in
# about 0.4 s instead of 42 s).
EMULATOR_TEST_CONFIG = EmulatorConfig(speed=0.01)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One emulator for the whole session, in a thread, on a free 127.0.0.1 port."""
    with EmulatorServer(EMULATOR_TEST_CONFIG) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The session emulator with no jobs, zeroed counters and its starting configuration."""
    emulator_server.restore()
    return emulator_server

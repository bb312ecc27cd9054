"""A local HappyHorse API: the contract, realistic timing, seeded faults and real MP4 results.

Start it with ``happyhorse-emulator`` (or ``python -m airflow_provider_happyhorse.emulator``), or from Python
with :class:`EmulatorServer` (in a thread) / :class:`EmulatorProcess` (a child process). It imports nothing from
Airflow nor from the rest of this package: its reading of the contract is independent of the client's.
"""

from __future__ import annotations

from .app import create_app
from .config import EmulatorConfig, FaultConfig
from .server import EmulatorProcess, EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorProcess", "EmulatorServer", "FaultConfig", "create_app"]

"""A local HappyHorse API: the contract, realistic timing, seeded faults and real MP4 results.

Start it with ``happyhorse-emulator`` (or ``python -m happyhorse_emulator``), or from Python
with :class:`EmulatorServer` (in a thread) / :class:`EmulatorProcess` (a child process). It imports nothing from
Airflow nor from the provider (airflow_provider_happyhorse): its reading of the contract is independent of the
client's.

Its admin routes want the handle's ``admin_token`` in the ``X-Emulator-Token`` header, and its documents name API
keys only by :func:`key_id` (``stats["jobs"]["by_key"][key_id(key)]``).
"""

from __future__ import annotations

from .app import create_app
from .config import ADMIN_TOKEN_HEADER, EmulatorConfig, FaultConfig, key_id
from .server import EmulatorProcess, EmulatorServer
from .version import __version__

__all__ = [
    "ADMIN_TOKEN_HEADER",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "FaultConfig",
    "__version__",
    "create_app",
    "key_id",
]

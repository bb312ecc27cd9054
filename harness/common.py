"""What every part of the harness shares: its errors, the key of a task instance, how ids and API times are read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ClusterError(RuntimeError):
    """Base class of every error raised by the harness."""


class ClusterStartError(ClusterError):
    """A component exited early or did not become healthy in time."""


class ClusterTimeout(ClusterError, TimeoutError):
    """Waiting for a DAG, a run or a component ran out of time."""


# --------------------------------------------------------------------------------------------
# Task instances
# --------------------------------------------------------------------------------------------


class TaskKey(NamedTuple):
    """Identifies one task instance across its tries (``map_index`` is -1 when not mapped)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


def normalize_uuid(value: object) -> str:
    """``01a2...-...``, ``01a2...`` (how SQLite stores UUIDs) and a :class:`uuid.UUID` all become 32 hex digits."""
    return uuid.UUID(str(value)).hex


def parse_api_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None

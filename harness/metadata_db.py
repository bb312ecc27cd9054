"""Read-only access to the cluster's metadata database (SQLite) while Airflow writes to it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common import TaskKey, normalize_uuid


def connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection; in WAL mode it never blocks Airflow's writers."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


def parse_db_time(value: object) -> datetime | None:
    """SQLite stores Airflow's UTC timestamps as naive ISO strings."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class MetadataDB:
    """Queries on the metadata DB file, each through a read-only connection of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with contextlib.closing(connect_read_only(self.path)) as connection:
            return connection.execute(sql, tuple(params)).fetchall()

    def tables(self) -> list[str]:
        return [row["name"] for row in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a metadata table."""
        if table not in self.tables():
            raise ValueError(f"no table {table!r} in {self.path}")
        return [dict(row) for row in self.query(f'SELECT * FROM "{table}"')]  # noqa: S608

    def ti_keys_by_id(self) -> dict[str, tuple[TaskKey, int]]:
        """Task-instance id (32 hex digits) -> (key, try number), current and past tries."""
        keys: dict[str, tuple[TaskKey, int]] = {}
        for table, id_column in (("task_instance_history", "task_instance_id"), ("task_instance", "id")):
            for row in self.query(
                f"SELECT {id_column} AS ti_id, dag_id, run_id, task_id, map_index, try_number FROM {table}"  # noqa: S608
            ):
                key = TaskKey(row["dag_id"], row["run_id"], row["task_id"], row["map_index"])
                keys[normalize_uuid(row["ti_id"])] = (key, row["try_number"])
        return keys

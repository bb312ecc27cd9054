"""Read-only access to the cluster's metadata database while Airflow writes to it: SQLite (:class:`MetadataDB`)
or PostgreSQL (:class:`PostgresMetadataDB`, the distributed cluster's).

Both take the same queries: ``?`` placeholders, rows read as ``row["column"]`` (or ``dict(row)``), and
:attr:`MetadataDB.errors`, the exceptions a query raises while the database is busy, restarting or not yet
migrated (callers that poll catch those and try again).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.common import TaskKey, normalize_uuid


def connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection; in WAL mode it never blocks Airflow's writers."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


def parse_db_time(value: object) -> datetime | None:
    """A timestamp as the database returns it: SQLite stores Airflow's UTC times as naive ISO strings,
    PostgreSQL returns aware datetimes."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class MetadataDB:
    """Queries on the SQLite metadata DB file, each through a read-only connection of its own."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    """What a query raises while the database is locked, missing or being migrated."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        with contextlib.closing(connect_read_only(self.path)) as connection:
            return list(connection.execute(sql, tuple(params)).fetchall())

    def tables(self) -> list[str]:
        return [
            row["name"]
            for row in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not row["name"].startswith("sqlite_")
        ]

    def primary_key(self, table: str) -> list[str]:
        """The columns of ``table``'s primary key."""
        return [col["name"] for col in self.query(f'PRAGMA table_info("{table}")') if col["pk"]]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a metadata table."""
        if table not in self.tables():
            raise ValueError(f"no table {table!r} in {self.describe()}")
        return [dict(row) for row in self.query(f'SELECT * FROM "{table}"')]  # noqa: S608

    def describe(self) -> str:
        return str(self.path)

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


class PostgresMetadataDB(MetadataDB):
    """The same queries on a PostgreSQL metadata database (``psycopg2``, installed with the distributed extras).

    Each query opens a connection of its own in a read-only session (so a test cannot change what Airflow
    wrote) and closes it; ``?`` placeholders become ``%s``. JSON columns come back as Python values,
    ``bytea`` as ``bytes`` and ``uuid`` as text.
    """

    def __init__(self, dsn: Mapping[str, Any]) -> None:
        import psycopg2

        self.dsn = dict(dsn)
        self.errors = (psycopg2.Error,)
        self.path = Path("/nonexistent-postgres-db")  # never a file: nothing copies or reads it as one

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        import psycopg2
        import psycopg2.extras

        connection = psycopg2.connect(**self.dsn, connect_timeout=5)
        try:
            connection.set_session(readonly=True, autocommit=True)
            with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
                rows = cursor.fetchall() if cursor.description is not None else []
        finally:
            connection.close()
        return [{name: _plain(value) for name, value in row.items()} for row in rows]

    def tables(self) -> list[str]:
        return [
            row["table_name"]
            for row in self.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]

    def primary_key(self, table: str) -> list[str]:
        return [
            row["column_name"]
            for row in self.query(
                "SELECT kcu.column_name FROM information_schema.table_constraints tc "
                "JOIN information_schema.key_column_usage kcu "
                "ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema "
                "WHERE tc.table_schema = 'public' AND tc.table_name = ? AND tc.constraint_type = 'PRIMARY KEY' "
                "ORDER BY kcu.ordinal_position",
                (table,),
            )
        ]

    def describe(self) -> str:
        return f"postgresql://{self.dsn.get('host')}:{self.dsn.get('port')}/{self.dsn.get('dbname')}"


def _plain(value: Any) -> Any:
    """``bytea`` columns arrive as ``memoryview``: the same ``bytes`` SQLite gives."""
    return value.tobytes() if isinstance(value, memoryview) else value

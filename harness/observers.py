"""What a test looks at while and after a cluster runs: task-instance states sampled from the metadata DB,
worker starts and runs, DAG files not parsed yet, log files, and every place a secret leaked to.

Counting worker starts: every time a worker process starts (or resumes, after a deferral) a task,
its task runner calls the execution API ``PATCH /execution/task-instances/{id}/run``, and the
execution-api server adds exactly one ``running`` row to the audit ``log`` table for each accepted call
(duplicate retries of the same call from the same pid are not logged). :func:`worker_starts`
counts those rows. A worker that is killed before it reaches that call never ran the task and
is not counted. How long each worker held its slot comes from the supervisor's
``Workload finished`` line in the scheduler log (:func:`worker_runs`); a supervisor that was
SIGKILLed writes no such line.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from harness.common import ClusterError, TaskKey, normalize_uuid, parse_api_time
from harness.metadata_db import MetadataDB

SAMPLE_INTERVAL_SEC = 0.2
NO_STATUS = "none"
_DB_FILES = ("airflow.db", "airflow.db-wal", "airflow.db-shm", "airflow.db-journal")
_TEXT_LOG_PAIR = re.compile(r"(\w+)=(\S+)")
# A task's log file: ``attempt=N.log`` from the worker, ``attempt=N.log.trigger.<triggerer job id>.log`` from a
# triggerer (Airflow names a trigger's log after the task's).
TASK_LOG_NAME = re.compile(r"^attempt=(?P<attempt>\d+)\.log(?P<trigger>\.trigger\.(?P<triggerer>\d+)\.log)?$")


class StateChange(NamedTuple):
    """A state the sampler saw, with the try it belonged to and when it was first seen."""

    state: str
    try_number: int
    seen_at: float  # time.time()


@dataclass(frozen=True)
class WorkerRun:
    """One finished worker run, from the supervisor's ``Workload finished`` log line."""

    ti_id: str
    key: TaskKey | None  # None when the task-instance id is not (any longer) in the DB
    try_number: int | None
    duration: float  # seconds between the supervisor taking and releasing its executor slot
    exit_code: int | None
    final_state: str | None
    finished_at: datetime | None


# --------------------------------------------------------------------------------------------
# I/O-free helpers
# --------------------------------------------------------------------------------------------


def _collapse(changes: list[StateChange], state: str, try_number: int, seen_at: float) -> None:
    """Append a sample unless it repeats the last state of the same try."""
    if not changes or (changes[-1].state, changes[-1].try_number) != (state, try_number):
        changes.append(StateChange(state, try_number, seen_at))


def _log_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Structured events from a component log, JSON lines or structlog's console format."""
    for line in lines:
        text = line.strip()
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                event = json.loads(text)
                if isinstance(event, dict):
                    yield event
            continue
        match = re.match(r"^(\S+)\s+\[\s*\w+\s*\]\s+(.*?)\s{2,}\[[^\]]*\]\s*(.*)$", text)
        if match:
            event = {"timestamp": match.group(1), "event": match.group(2).strip()}
            event.update(dict(_TEXT_LOG_PAIR.findall(match.group(3))))
            yield event


def _to_float(value: object) -> float | None:
    if isinstance(value, int | float | str):
        with contextlib.suppress(ValueError):
            return float(value)
    return None


def _to_int(value: object) -> int | None:
    if isinstance(value, int | str):
        with contextlib.suppress(ValueError):
            return int(value)
    return None


def _might_contain_dag(path: Path) -> bool:
    """Airflow's default heuristic: a ``.py`` file mentioning both "airflow" and "dag"."""
    if path.suffix != ".py" or path.name.startswith((".", "_")):
        return False
    try:
        content = path.read_bytes().lower()
    except OSError:
        return False
    return b"airflow" in content and b"dag" in content


# --------------------------------------------------------------------------------------------
# The state sampler
# --------------------------------------------------------------------------------------------


class StateRecorder:
    """Samples task-instance states from the metadata DB in a background thread.

    Use it through :meth:`AirflowCluster.record_states` or call :meth:`start`/:meth:`stop`.
    For every task instance it keeps the ordered list of distinct states seen (consecutive
    repeats collapsed, a new try always starts a new entry). States that last less than one
    interval can be missed; :meth:`AirflowCluster.worker_starts` is the exact count of starts.

    :param db: the metadata DB (a :class:`~harness.metadata_db.MetadataDB`, or the path of a SQLite file).
    """

    def __init__(
        self, db: MetadataDB | Path, *, dag_id: str | None = None, interval: float = SAMPLE_INTERVAL_SEC
    ) -> None:
        self._db = db if isinstance(db, MetadataDB) else MetadataDB(db)
        self._dag_id = dag_id
        self._interval = interval
        self._changes: dict[TaskKey, list[StateChange]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.failed_samples = 0

    def start(self) -> StateRecorder:
        if self._thread is not None:
            raise ClusterError("StateRecorder already started")
        self._thread = threading.Thread(target=self._run, name="airflow-state-recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()  # the final state of anything that finished after the last tick

    def __enter__(self) -> StateRecorder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        """Take one sample now (also called by the background thread)."""
        query = "SELECT dag_id, run_id, task_id, map_index, state, try_number FROM task_instance"
        params: tuple[str, ...] = ()
        if self._dag_id is not None:
            query += " WHERE dag_id = ?"
            params = (self._dag_id,)
        try:
            rows = self._db.query(query, params)
        except self._db.errors:
            self.failed_samples += 1  # e.g. a schema change during migration, a restarting server; next tick
            return
        now = time.time()
        with self._lock:
            self.samples += 1
            for row in rows:
                key = TaskKey(row["dag_id"], row["run_id"], row["task_id"], row["map_index"])
                changes = self._changes.setdefault(key, [])
                _collapse(changes, row["state"] or NO_STATUS, row["try_number"] or 0, now)

    @property
    def history(self) -> dict[TaskKey, list[StateChange]]:
        """Every state change seen, per task instance."""
        with self._lock:
            return {key: list(changes) for key, changes in self._changes.items()}

    def states(self, key: TaskKey) -> list[str]:
        """The ordered distinct states seen for one task instance (``[]`` if never seen)."""
        with self._lock:
            return [change.state for change in self._changes.get(key, [])]

    def find(self, dag_id: str, task_id: str, map_index: int = -1) -> dict[TaskKey, list[str]]:
        """States per run for one task, convenient when the run id is not known in advance."""
        with self._lock:
            return {
                key: [change.state for change in changes]
                for key, changes in self._changes.items()
                if (key.dag_id, key.task_id, key.map_index) == (dag_id, task_id, map_index)
            }


# --------------------------------------------------------------------------------------------
# DAG parsing
# --------------------------------------------------------------------------------------------


def unparsed_files(dags_folder: Path, db: MetadataDB) -> list[Path]:
    """DAG-looking files in the DAG folder that have neither a DAG nor an import error yet."""
    candidates = [path for path in sorted(dags_folder.rglob("*.py")) if _might_contain_dag(path)]
    parsed: set[Path] = set()
    for row in db.query("SELECT fileloc FROM dag WHERE NOT is_stale"):
        parsed.add(Path(row["fileloc"]))
    for row in db.query("SELECT filename FROM import_error"):
        parsed.add((dags_folder / row["filename"]).resolve())
    return [path for path in candidates if path.resolve() not in parsed]


# --------------------------------------------------------------------------------------------
# Worker accounting
# --------------------------------------------------------------------------------------------


def worker_starts(db: MetadataDB, dag_id: str | None = None, run_id: str | None = None) -> dict[TaskKey, int]:
    """How many times a worker started running each task instance (all tries summed).

    Counted from the ``running`` rows the execution API writes to the audit ``log`` table;
    a resume after a deferral is a start of its own.
    """
    query = "SELECT dag_id, run_id, task_id, map_index FROM log WHERE event = 'running'"
    params: list[str] = []
    if dag_id is not None:
        query += " AND dag_id = ?"
        params.append(dag_id)
    if run_id is not None:
        query += " AND run_id = ?"
        params.append(run_id)
    counts: dict[TaskKey, int] = {}
    for row in db.query(query, tuple(params)):
        key = TaskKey(row["dag_id"], row["run_id"], row["task_id"], row["map_index"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def worker_runs(supervisor_logs: Path | Sequence[Path], db: MetadataDB) -> list[WorkerRun]:
    """Finished worker runs with the seconds each held an executor slot, from the logs of the processes
    that supervise tasks: the scheduler's with LocalExecutor, every Celery worker's with CeleryExecutor."""
    paths = [supervisor_logs] if isinstance(supervisor_logs, Path) else list(supervisor_logs)
    paths = [path for path in paths if path.exists()]
    if not paths:
        return []
    keys = db.ti_keys_by_id()
    runs = []
    for path in paths:
        with path.open(errors="replace") as lines:
            for event in _log_events(lines):
                if event.get("event") != "Workload finished" or event.get("workload_type") != "ExecuteTask":
                    continue
                ti_id = normalize_uuid(str(event["workload_id"]))
                key, try_number = keys.get(ti_id, (None, None))
                runs.append(
                    WorkerRun(
                        ti_id=ti_id,
                        key=key,
                        try_number=try_number,
                        duration=_to_float(event.get("duration")) or 0.0,
                        exit_code=_to_int(event.get("exit_code")),
                        final_state=event.get("final_state"),
                        finished_at=parse_api_time(event.get("timestamp")),
                    )
                )
    return sorted(runs, key=lambda run: run.finished_at.timestamp() if run.finished_at else 0.0)


# --------------------------------------------------------------------------------------------
# Log files
# --------------------------------------------------------------------------------------------


def log_files(logs_dir: Path) -> list[Path]:
    """Every file under the logs folder: component, migration, task and parsing logs."""
    return sorted(path for path in logs_dir.rglob("*") if path.is_file())


def task_log_files(logs_dir: Path, dag_id: str, run_id: str | None = None) -> list[Path]:
    """Task logs (worker and trigger) of a DAG, optionally of one run."""
    base = logs_dir / f"dag_id={dag_id}"
    if run_id is not None:
        base = base / f"run_id={run_id}"
    return sorted(path for path in base.rglob("*.log") if path.is_file())


def copy_logs(logs_dir: Path, destination: Path, name: str) -> Path:
    """Copy the logs folder to ``destination/airflow-logs-<name>``; returns the copy."""
    target = destination / f"airflow-logs-{name}"
    shutil.copytree(logs_dir, target, dirs_exist_ok=True)
    return target


# --------------------------------------------------------------------------------------------
# Secrets scan
# --------------------------------------------------------------------------------------------


def find_secret(
    secret: str,
    *,
    home: Path,
    db: MetadataDB,
    env: Mapping[str, str],
    exclude_tables: Sequence[str] = ("connection",),
    skip_dirs: Sequence[Path] = (),
) -> list[str]:
    """Every place ``secret`` occurs: files under ``home`` and rows of the metadata DB.

    Files: every file under ``home`` except the SQLite files themselves and whatever is under ``skip_dirs``
    (a PostgreSQL data directory): those are read through SQL instead, so deleted rows do not count.
    Reported as ``path:line``.

    DB: every column of every table except ``exclude_tables``, reported as
    ``db:table.column[pk]``. Values that are Fernet tokens (trigger kwargs, encrypted
    variables) are decrypted first with the keys of ``[core] fernet_key`` in ``env`` (the cluster's
    environment), and JSON-escaped forms of the secret are matched too. The ``connection`` table is
    excluded by default because that is where a credential is supposed to live (encrypted when
    ``[core] fernet_key`` is set, which the harness always does); pass ``exclude_tables=()`` to
    search it as well.
    """
    if not secret:
        raise ValueError("secret must not be empty")
    needles = {secret, json.dumps(secret)[1:-1]}
    places = [f"{path}:{line}" for path, line in _find_in_files(home, needles, skip_dirs)]
    places += _find_in_db(db, env, needles, set(exclude_tables))
    return places


def _find_in_files(home: Path, needles: set[str], skip_dirs: Sequence[Path] = ()) -> Iterator[tuple[Path, int]]:
    raw_needles = [needle.encode() for needle in needles]
    skipped = {home / name for name in _DB_FILES}
    for path in sorted(home.rglob("*")):
        if path in skipped or not path.is_file() or any(path.is_relative_to(skip) for skip in skip_dirs):
            continue
        with contextlib.suppress(OSError):
            content = path.read_bytes()
            if not any(needle in content for needle in raw_needles):
                continue
            for number, line in enumerate(content.splitlines(), start=1):
                if any(needle in line for needle in raw_needles):
                    yield path, number


def _find_in_db(db: MetadataDB, env: Mapping[str, str], needles: set[str], exclude: set[str]) -> list[str]:
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet

    keys = [key.strip() for key in env.get("AIRFLOW__CORE__FERNET_KEY", "").split(",")]
    fernet = MultiFernet([Fernet(key.encode()) for key in keys if key]) if any(keys) else None
    places = []
    for table in db.tables():
        if table in exclude:
            continue
        pk = db.primary_key(table)
        for number, row in enumerate(db.query(f'SELECT * FROM "{table}"')):  # noqa: S608
            for column, raw in dict(row).items():
                value = _as_text(raw)
                if value is None:
                    continue
                texts = [value]
                if fernet is not None and value.startswith("gAAAAA"):
                    with contextlib.suppress(InvalidToken, ValueError):
                        texts.append(fernet.decrypt(value.encode()).decode(errors="replace"))
                if any(needle in text for needle in needles for text in texts):
                    where = ",".join(f"{name}={row[name]}" for name in pk) or f"row={number}"
                    places.append(f"db:{table}.{column}[{where}]")
    return places


def _as_text(value: object) -> str | None:
    """A column's value as text to search: SQLite gives text and bytes; PostgreSQL also gives JSON columns as
    Python values (searched in their JSON form, like the text SQLite stores). Numbers, times: None."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return None

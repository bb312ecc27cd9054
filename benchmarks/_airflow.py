"""What the two real-Airflow benchmarks (``worker_cost.py``, ``backfill_throughput.py``) share.

Connections as ``AIRFLOW_CONN_*`` JSON, a machine-load sampler, CPU seconds of a process tree (psutil), worker
accounting per DAG from :class:`harness.airflow_cluster.AirflowCluster`, rows of the metadata DB, and the table and
JSON output. Nothing here starts a process: the benchmarks own the emulator and the clusters they start.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from harness import AirflowCluster, WorkerRun

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
DAGS = BENCHMARKS / "dags"
# Airflow 3.3.2's default for [workers] min_heartbeat_interval: how long a task supervisor can linger after its
# task runner exited (see harness/airflow_cluster.py).
AIRFLOW_DEFAULT_MIN_HEARTBEAT_INTERVAL = 5
MIN_HEARTBEAT_ENV = "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, CI cancellation) into SystemExit, so every ``with`` block stops what it started."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- connections ------------------------------------------------------------------------------------------------


def happyhorse_connection(base_url: str, api_key: str) -> str:
    """``AIRFLOW_CONN_*`` value of a ``happyhorse`` connection (what ``GenerateVideoOperator`` uses)."""
    return json.dumps({"conn_type": "happyhorse", "host": base_url, "password": api_key})


def http_connection(base_url: str, api_key: str) -> str:
    """``AIRFLOW_CONN_*`` value of an ``http`` connection whose extra holds the bearer header.

    The HTTP provider's hook sends every extra key it does not know as a request header.
    """
    return json.dumps(
        {
            "conn_type": "http",
            "host": base_url,
            "extra": {"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        }
    )


def heartbeat_env(min_heartbeat_interval: int | None) -> dict[str, str]:
    """``[workers] min_heartbeat_interval`` for the cluster; None leaves Airflow's default."""
    return {} if min_heartbeat_interval is None else {MIN_HEARTBEAT_ENV: str(min_heartbeat_interval)}


def heartbeat_label(min_heartbeat_interval: int | None) -> str:
    if min_heartbeat_interval is None:
        return f"Airflow default ({AIRFLOW_DEFAULT_MIN_HEARTBEAT_INTERVAL} s)"
    return f"{min_heartbeat_interval} s"


# -- process-level figures ---------------------------------------------------------------------------------------


class ComponentCpu:
    """CPU seconds a cluster component's process tree (or several components') used between :meth:`start` and
    :meth:`stop` (psutil).

    Each live process counts its own CPU plus that of its children it has already reaped (Linux accumulates a
    waited-for child's CPU, and its reaped descendants', into the parent). So a task runner that ran and exited
    during the window is counted in the LocalExecutor worker that waited for it, and nothing is counted twice:
    processes that exited are no longer read themselves.
    """

    def __init__(self, cluster: AirflowCluster, component: str | list[str]) -> None:
        self._cluster = cluster
        self._components = [component] if isinstance(component, str) else list(component)
        self._first: dict[int, float] = {}

    def _read(self) -> dict[int, float]:
        readings = {}
        for name in self._components:
            for pid in self._cluster.pids(name):
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(pid).cpu_times()
                    readings[pid] = times.user + times.system + times.children_user + times.children_system
        return readings

    def start(self) -> ComponentCpu:
        self._first = self._read()
        return self

    def stop(self) -> float:
        return sum(seconds - self._first.get(pid, 0.0) for pid, seconds in self._read().items())


@dataclass
class LoadSampler:
    """The machine's load while a benchmark runs: 1-minute load average and busy CPU %, every ``interval`` s."""

    interval: float = 2.0
    load: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        psutil.cpu_percent(None)
        while not self._stop.wait(self.interval):
            self.load.append(os.getloadavg()[0])
            self.busy.append(psutil.cpu_percent(None))

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        return {
            "cpus": psutil.cpu_count(),
            "load_avg_1m_mean": _rounded(statistics.fmean(self.load)) if self.load else None,
            "load_avg_1m_max": _rounded(max(self.load)) if self.load else None,
            "cpu_busy_percent_mean": _rounded(statistics.fmean(self.busy)) if self.busy else None,
            "cpu_busy_percent_max": _rounded(max(self.busy)) if self.busy else None,
        }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": [round(value, 2) for value in os.getloadavg()],
    }


# -- worker accounting -------------------------------------------------------------------------------------------


def wait_for_worker_runs(cluster: AirflowCluster, dag_ids: set[str], timeout: float = 60.0) -> list[WorkerRun]:
    """The finished worker runs of ``dag_ids``, once there is one for every worker start.

    A supervisor logs ``Workload finished`` up to ``min_heartbeat_interval`` after its task ended, so the last
    runs show up a few seconds after the DAG runs are done.
    """
    deadline = time.monotonic() + timeout
    while True:
        starts = sum(count for key, count in cluster.worker_starts().items() if key.dag_id in dag_ids)
        runs = [run for run in cluster.worker_runs() if run.key is not None and run.key.dag_id in dag_ids]
        if len(runs) >= starts or time.monotonic() > deadline:
            return runs
        time.sleep(1.0)


def worker_starts_for(cluster: AirflowCluster, dag_ids: set[str]) -> int:
    return sum(count for key, count in cluster.worker_starts().items() if key.dag_id in dag_ids)


def db_time(value: object) -> datetime | None:
    """SQLite keeps Airflow's UTC timestamps as naive ISO strings; PostgreSQL returns aware datetimes."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def xcom_values(cluster: AirflowCluster, dag_ids: set[str], task_id: str, key: str) -> dict[tuple[str, int], Any]:
    """(dag_id, map_index) -> decoded XCom value, read from the metadata DB (read-only)."""
    found = {}
    for row in cluster.db_rows("xcom"):
        if row["dag_id"] in dag_ids and row["task_id"] == task_id and row["key"] == key:
            value = row["value"]
            if isinstance(value, bytes):
                value = value.decode()
            # Task runners store the serialized value; the triggerer (TaskSuccessEvent) serializes it once more.
            for _ in range(2):
                if not isinstance(value, str):
                    break
                try:
                    value = json.loads(value)
                except ValueError:
                    break
            found[(row["dag_id"], row["map_index"])] = value
    return found


# -- output ------------------------------------------------------------------------------------------------------


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    return " ".join([".venv/bin/python", *(arg if " " not in arg else repr(arg) for arg in sys.argv)])


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")

"""
The trials' environment: one real Airflow cluster, and one API (an emulator process, sometimes behind a fault
gateway) per trial, each reached through a connection of its own (``conn_id`` == the trial's DAG id).

Also the ways a trial looks at what happened: task instances, worker starts, XComs, task and trigger logs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster, ApiError, TaskInstanceInfo, TaskKey
from harness.observers import TASK_LOG_NAME
from reliability.gateway import FaultGateway, GatewayFaults

if TYPE_CHECKING:
    from harness.distributed import DistributedCluster

DAGS_FOLDER = Path(__file__).resolve().parent / "dags"
# The distributed trials' DAGs (reliability --distributed), parsed only by the distributed cluster.
DISTRIBUTED_DAGS_FOLDER = Path(__file__).resolve().parent / "dags_distributed"
# Airflow 3.3.2: a supervisor lingers [workers] min_heartbeat_interval (5 s) after its task deferred, and a
# trigger that fires within that window can make the scheduler fail the task (harness docstring).
CLUSTER_SETTINGS = {"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1"}


@dataclass(frozen=True)
class ApiSpec:
    """What a trial needs from its API: the emulator's settings, the connection's extras, maybe a gateway."""

    config: EmulatorConfig
    connection_extra: Mapping[str, Any]
    gateway: GatewayFaults | None = None


class TrialApi:
    """One trial's emulator process (with a state file) and, if asked for, the gateway in front of it."""

    def __init__(self, conn_id: str, spec: ApiSpec, work_dir: Path) -> None:
        self.conn_id = conn_id
        self.spec = spec
        # A key of its own: the secrets trial looks for every key in every log and table.
        self.api_key = f"hh-{conn_id.replace('_', '-')}-{secrets.token_hex(16)}"
        config = spec.config.merged({"api_keys": [self.api_key]})
        self.emulator = EmulatorProcess(
            config,
            state_file=work_dir / f"{conn_id}.jobs.jsonl",
            log_file=work_dir / f"{conn_id}.emulator.log",
        )
        self.gateway: FaultGateway | None = None

    def start(self) -> None:
        self.emulator.start()
        if self.spec.gateway is not None:
            self.gateway = FaultGateway(self.emulator.base_url, self.spec.gateway).start()

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.emulator.close()

    @property
    def url(self) -> str:
        """What the Airflow connection points at."""
        return self.gateway.base_url if self.gateway is not None else self.emulator.base_url

    def connection_env(self) -> tuple[str, str]:
        connection = {
            "conn_type": "happyhorse",
            "host": self.url,
            "password": self.api_key,
            "extra": dict(self.spec.connection_extra),
        }
        return f"AIRFLOW_CONN_{self.conn_id.upper()}", json.dumps(connection)

    def stats(self) -> dict[str, Any]:
        return self.emulator.stats()

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.emulator.jobs()


class Lab:
    """Start with :meth:`start` (APIs first: the cluster's environment names them), end with :meth:`close`.

    :param parallelism: LocalExecutor slots; with ``distributed``, the slots of each of the two Celery workers.
    :param distributed: run the trials on a :class:`~harness.distributed.DistributedCluster` (PostgreSQL, Redis,
        CeleryExecutor with two workers, two triggerers) with the DAGs of ``reliability/dags_distributed``.
    :param cluster_env: more settings for every Airflow process (after the lab's own).
    """

    def __init__(
        self,
        work_dir: Path,
        specs: Mapping[str, ApiSpec],
        *,
        parallelism: int,
        distributed: bool = False,
        dags_folder: Path | None = None,
        cluster_env: Mapping[str, str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.clips_dir = work_dir / "clips"
        self.apis = {conn_id: TrialApi(conn_id, spec, work_dir) for conn_id, spec in specs.items()}
        self.parallelism = parallelism
        self.distributed = distributed
        self.dags_folder = dags_folder or (DISTRIBUTED_DAGS_FOLDER if distributed else DAGS_FOLDER)
        self.cluster_env = dict(cluster_env or {})
        self._cluster: AirflowCluster | None = None

    @property
    def cluster(self) -> AirflowCluster:
        if self._cluster is None:
            raise RuntimeError("the lab is not started")
        return self._cluster

    @property
    def distributed_cluster(self) -> DistributedCluster:
        """The cluster, for the trials that only run on a distributed one."""
        from harness.distributed import DistributedCluster

        if not isinstance(self._cluster, DistributedCluster):
            raise RuntimeError("this trial needs the distributed cluster (reliability.run --distributed)")
        return self._cluster

    def start(self) -> None:
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        for api in self.apis.values():
            api.start()
        env = dict(CLUSTER_SETTINGS)
        env.update(api.connection_env() for api in self.apis.values())
        env.update(self.cluster_env)
        home = self.work_dir / "airflow-home"
        if self.distributed:
            from harness.distributed import DistributedCluster

            self._cluster = DistributedCluster(home, self.dags_folder, env, worker_concurrency=self.parallelism)
        else:
            self._cluster = AirflowCluster(home, self.dags_folder, env, parallelism=self.parallelism)
        self._cluster.start()
        errors = self._cluster.import_errors()
        if errors:
            raise RuntimeError(
                f"DAG files do not import: {[(error.filename, error.stack_trace[-500:]) for error in errors]}"
            )

    def close(self) -> list[str]:
        """Stop everything; returns what could not be stopped cleanly (never raises)."""
        errors = []
        if self._cluster is not None:
            try:
                self._cluster.stop()
            except Exception as error:  # keep stopping the rest
                errors.append(f"cluster: {error}")
        for api in self.apis.values():
            try:
                api.stop()
            except Exception as error:
                errors.append(f"{api.conn_id}: {error}")
        return errors

    # -- looking at runs -------------------------------------------------------------------------------

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.cluster.dag_run(dag_id, run_id)["state"])

    def task_instances(self, dag_id: str, run_id: str, task_id: str) -> dict[int, TaskInstanceInfo]:
        return {ti.map_index: ti for ti in self.cluster.task_instances(dag_id, run_id) if ti.task_id == task_id}

    def worker_starts(self, dag_id: str, run_id: str, task_id: str) -> dict[int, int]:
        return {
            key.map_index: count
            for key, count in self.cluster.worker_starts(dag_id, run_id).items()
            if key.task_id == task_id
        }

    def xcom(self, key: TaskKey, name: str) -> Any:
        """An XCom's value, or None."""
        try:
            return self.cluster.xcom(key.dag_id, key.run_id, key.task_id, name, map_index=key.map_index)
        except ApiError:
            return None

    def task_logs(self, dag_id: str, run_id: str) -> TaskLogs:
        return TaskLogs.collect(self.cluster.task_log_files(dag_id, run_id))


@dataclass
class TaskLogs:
    """A run's task logs by (task id, map index): worker logs per attempt, trigger logs per triggerer."""

    worker: dict[tuple[str, int, int], Path]
    trigger: dict[tuple[str, int], dict[str, Path]]

    @classmethod
    def collect(cls, paths: list[Path]) -> TaskLogs:
        worker: dict[tuple[str, int, int], Path] = {}
        trigger: dict[tuple[str, int], dict[str, Path]] = {}
        for path in paths:
            match = TASK_LOG_NAME.match(path.name)
            if match is None:
                continue
            parts = dict(part.split("=", 1) for part in path.parent.parts if "=" in part)
            task_id = parts.get("task_id", "")
            map_index = int(parts.get("map_index", -1))
            if match["trigger"]:
                trigger.setdefault((task_id, map_index), {})[match["triggerer"]] = path
            else:
                worker[(task_id, map_index, int(match["attempt"]))] = path
        return cls(worker, trigger)

    def attempt(self, task_id: str, map_index: int, attempt: int) -> LogView:
        path = self.worker.get((task_id, map_index, attempt))
        return LogView.read(path)

    def triggers(self, task_id: str, map_index: int) -> dict[str, LogView]:
        return {owner: LogView.read(path) for owner, path in self.trigger.get((task_id, map_index), {}).items()}


@dataclass
class LogView:
    """One log file: its events (JSON lines) and the human-readable text of each (message plus exception)."""

    path: Path | None
    events: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path | None) -> LogView:
        events: list[dict[str, Any]] = []
        if path is not None and path.exists():
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        events.append(event)
        return cls(path, events)

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def lines(self) -> Iterator[str]:
        for event in self.events:
            yield event_text(event)

    def find(self, needle: str) -> list[str]:
        return [line for line in self.lines() if needle in line]

    def has(self, needle: str) -> bool:
        return any(needle in line for line in self.lines())

    def exception_texts(self) -> list[str]:
        return [text for event in self.events for text in exception_texts(event)]


def exception_texts(event: Mapping[str, Any]) -> list[str]:
    texts = []
    details = event.get("error_detail")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict):
                texts.append(f"{detail.get('exc_type')}: {detail.get('exc_value')}")
    if isinstance(event.get("exception"), str):
        texts.append(event["exception"])
    return texts


def event_text(event: Mapping[str, Any]) -> str:
    text = str(event.get("event", ""))
    extras = exception_texts(event)
    return " | ".join([text, *extras]) if extras else text

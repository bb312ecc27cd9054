"""A distributed Airflow 3 deployment on one machine: PostgreSQL, Redis, CeleryExecutor with several workers and
several triggerers, a scheduler, a dag-processor and two api-servers, each process a host of its own.

:class:`DistributedCluster` is an :class:`~harness.airflow_cluster.AirflowCluster` (the same REST client, state
recorder, worker accounting, faults and secrets scan) whose metadata DB is a private PostgreSQL server and whose
executor is Celery, with a private Redis server as its broker (:mod:`harness.services`). It needs the distributed
extras (``requirements/distributed.txt``, installed in ``.venv-distributed`` by ``make e2e-distributed``) and
Debian's ``postgresql`` and ``redis-server`` (``scripts/install-distributed-deps.sh``)::

    with DistributedCluster(tmp_path / "home", dags_folder) as cluster:
        run_id = cluster.trigger("my_dag")
        assert cluster.wait_for_run("my_dag", run_id) == "success"
        cluster.kill("triggerer-1")          # its triggers move to triggerer-2 after the threshold
        cluster.postgres.restart(downtime=5)

Its components, one :class:`~harness.processes.ComponentSpec` each (``workers`` and ``triggerers`` set how many)::

    api-server      the public REST API                       127.0.0.11, its own port
    execution-api   the API task runners and triggerers call  127.0.0.12, its own port
    scheduler       CeleryExecutor: sends task workloads to Redis       127.0.0.13
    dag-processor                                                       127.0.0.14
    triggerer-N     serves its trigger logs on a port of its own        127.0.0.2N
    worker-N        ``airflow celery worker``, Celery node worker-N@127.0.0.3N, its own log-server port

Each process's hostname is its own loopback address (``harness.hostname``, Airflow's ``[core] hostname_callable``):
Airflow records it in the ``job`` rows and on the task instances, so a test can tell which triggerer holds a
trigger and which worker ran a try, and the api-servers bind to theirs. Every process shares ``home`` (the DAG
folder, the log folder: logs are read from the disk, as with a shared log volume).

Layout: as :class:`AirflowCluster`'s, without ``airflow.db``, plus ``home/services/postgres/`` (its log; its data
directory, or a link to it when the harness runs as root) and ``home/services/redis/`` (its configuration and log).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.airflow_cluster import AirflowCluster
from harness.hostname import HOSTNAME_VARIABLE
from harness.metadata_db import MetadataDB, PostgresMetadataDB
from harness.processes import DEFAULT_STARTUP_TIMEOUT, ComponentSpec, free_ports
from harness.services import PostgresServer, RedisServer

SCHEDULER = "scheduler"
API_SERVER = "api-server"
EXECUTION_API = "execution-api"
DAG_PROCESSOR = "dag-processor"
DEFAULT_WORKER_CONCURRENCY = 4
# Airflow's default is 1.0 s; a scheduler sharing two cores with a dozen processes can take longer to send a task.
CELERY_OPERATION_TIMEOUT_SEC = 10
# Airflow's default, where the single-node cluster uses 10 s. A triggerer's loop handles its triggers' requests
# (the XComs a trigger stores) one by one through an in-process execution API and heartbeats only between
# rounds: when a batch of renders ends together on two busy cores that took up to 28 s here (py-spy showed
# the loop in XComOperations.set), and with 10 s the other triggerer took over triggers that were not lost.
TRIGGERER_HEALTH_CHECK_THRESHOLD_SEC = 30


def triggerer_name(number: int) -> str:
    return f"triggerer-{number}"


def worker_name(number: int) -> str:
    return f"worker-{number}"


class DistributedCluster(AirflowCluster):
    """Real Airflow components on PostgreSQL and CeleryExecutor, each with a hostname of its own.

    :param home: the shared ``AIRFLOW_HOME``; created if missing. Use a fresh one.
    :param dags_folder: the DAG folder (one ``LocalDagBundle``).
    :param extra_env: environment applied last to every process.
    :param workers: how many Celery workers (``worker-1`` ...).
    :param triggerers: how many triggerers (``triggerer-1`` ...).
    :param worker_concurrency: task slots per worker (``--concurrency``); ``[core] parallelism`` is the sum.
    :param components: the components :meth:`start` launches (default: all); any other can be started later
        with :meth:`restart`.
    :param services_dir: where PostgreSQL and Redis keep their files (default ``home/services``).

    The other keyword arguments are :class:`AirflowCluster`'s. :attr:`postgres` and :attr:`redis` are the
    services (restart them to inject a fault); :attr:`workers` and :attr:`triggerers` name the components.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        extra_env: Mapping[str, str] | None = None,
        *,
        workers: int = 2,
        triggerers: int = 2,
        worker_concurrency: int = DEFAULT_WORKER_CONCURRENCY,
        components: Sequence[str] | None = None,
        services_dir: Path | None = None,
        python: str = sys.executable,
        python_path: Sequence[Path] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT * 2,
        wait_for_parse: bool = True,
        api_login: tuple[str, str] | None = None,
    ) -> None:
        self.workers = [worker_name(number) for number in range(1, workers + 1)]
        self.triggerers = [triggerer_name(number) for number in range(1, triggerers + 1)]
        self.worker_concurrency = worker_concurrency
        services = (services_dir or home / "services").resolve()
        self.postgres = PostgresServer(services / "postgres")
        self.redis = RedisServer(services / "redis")
        self.hostnames = _hostnames(self.triggerers, self.workers)
        serving = [*self.triggerers, *self.workers]
        self._log_server_ports = dict(zip(serving, free_ports(len(serving)), strict=True))
        names = [API_SERVER, EXECUTION_API, SCHEDULER, DAG_PROCESSOR, *self.triggerers, *self.workers]
        super().__init__(
            home,
            dags_folder,
            extra_env,
            parallelism=workers * worker_concurrency,
            components=names if components is None else components,
            python=python,
            python_path=python_path,
            startup_timeout=startup_timeout,
            wait_for_parse=wait_for_parse,
            reuse_migrated_db=False,  # a fresh PostgreSQL server each time: nothing to copy
            api_login=api_login,
        )

    # -- what it is made of ------------------------------------------------------------------

    def _build_env(self, extra_env: dict[str, str]) -> dict[str, str]:
        env = super()._build_env({})
        env.pop("AIRFLOW__API__HOST", None)  # each api-server binds to its own address
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "harness.hostname.component_hostname",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                    f"http://{self.hostnames[EXECUTION_API]}:{self.execution_port}/execution/"
                ),
                "AIRFLOW__API__BASE_URL": f"http://{self.hostnames[API_SERVER]}:{self.port}",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.sqlalchemy_url,
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.sqlalchemy_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": str(CELERY_OPERATION_TIMEOUT_SEC),
                # Airflow's own default, said explicitly (it warns otherwise). A task whose worker died is
                # failed by the scheduler's heartbeat check and retried; Redis never hands its message out again.
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_CHECK_THRESHOLD_SEC),
            }
        )
        env.update(extra_env)
        return env

    def _metadata_db(self) -> MetadataDB:
        return PostgresMetadataDB(self.postgres.dsn)

    def _component_specs(self) -> list[ComponentSpec]:
        def spec(
            name: str,
            command: tuple[str, ...],
            env: Mapping[str, str],
            *,
            port: int | None = None,
            health_path: str | None = None,
            job_type: str | None = None,
            ready_text: str | None = None,
            log_server_port: int | None = None,
        ) -> ComponentSpec:
            host = self.hostnames[name]
            return ComponentSpec(
                name,
                command,
                hostname=host,
                port=port,
                health_path=health_path,
                job_type=job_type,
                log_server_port=log_server_port,
                env={HOSTNAME_VARIABLE: host, **env},
                airflow_hostname=host,
                ready_text=ready_text,
            )

        specs = [
            spec(
                API_SERVER,
                ("api-server", "--apps", "core"),
                {"AIRFLOW__API__HOST": self.hostnames[API_SERVER]},
                port=self.port,
                health_path="/api/v2/monitor/health",
            ),
            spec(
                EXECUTION_API,
                ("api-server", "--apps", "execution"),
                {"AIRFLOW__API__HOST": self.hostnames[EXECUTION_API]},
                port=self.execution_port,
                health_path="/execution/health",
            ),
            spec(SCHEDULER, ("scheduler", "--skip-serve-logs"), {}, job_type="SchedulerJob"),
            spec(DAG_PROCESSOR, ("dag-processor",), {}, job_type="DagProcessorJob"),
        ]
        for name in self.triggerers:
            port = self._log_server_ports[name]
            specs.append(
                spec(
                    name,
                    ("triggerer",),
                    {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port)},
                    job_type="TriggererJob",
                    log_server_port=port,
                )
            )
        for name in self.workers:
            port = self._log_server_ports[name]
            node = self.celery_node(name)
            specs.append(
                spec(
                    name,
                    (
                        "celery",
                        "worker",
                        "--celery-hostname",
                        node,
                        "--concurrency",
                        str(self.worker_concurrency),
                        "--pid",
                        str(self.home / f"{name}.pid"),
                    ),
                    {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)},
                    ready_text=f"{node} ready.",
                    log_server_port=port,
                )
            )
        return specs

    def _rest_base_url(self) -> str:
        return f"http://{self.hostnames[API_SERVER]}:{self.port}"

    def _start_services(self) -> None:
        self.postgres.start()
        self.redis.start()

    def _stop_services(self) -> list[str]:
        errors = []
        for name, stop in (("redis", self.redis.stop), ("postgres", self.postgres.remove)):
            try:
                stop()
            except Exception as error:  # stop the other one too
                errors.append(f"{name}: {error}")
        return errors

    def _supervisor_logs(self) -> list[Path]:
        return [self.component_log(name) for name in self.workers]

    def _database_dirs(self) -> list[Path]:
        return [self.postgres.data_dir]

    # -- where things run --------------------------------------------------------------------

    def celery_node(self, worker: str) -> str:
        """The Celery node name of a worker component (``worker-1@127.0.0.31``)."""
        return f"{worker}@{self.hostnames[worker]}"

    @property
    def triggerer_health_check_threshold(self) -> float:
        """Seconds without a heartbeat after which a triggerer's triggers go to another (``[triggerer]``)."""
        return float(self._env["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"])

    def component_at(self, hostname: str | None) -> str | None:
        """The component whose hostname Airflow recorded (a task instance's ``hostname``, a job's)."""
        return next((name for name, host in self.hostnames.items() if host == hostname), None)

    def triggerer_jobs(self) -> dict[int, str]:
        """Triggerer job id -> the triggerer component that runs (or ran) it."""
        rows = self.db.query("SELECT id, hostname FROM job WHERE job_type = 'TriggererJob'")
        return {int(row["id"]): name for row in rows if (name := self.component_at(row["hostname"])) is not None}

    def trigger_owners(self) -> dict[int, str | None]:
        """Trigger id -> the triggerer component it is assigned to now (None: unassigned)."""
        jobs = self.triggerer_jobs()
        rows = self.db.query("SELECT id, triggerer_id FROM trigger")
        return {int(row["id"]): jobs.get(row["triggerer_id"]) if row["triggerer_id"] else None for row in rows}


def _hostnames(triggerers: Sequence[str], workers: Sequence[str]) -> dict[str, str]:
    """Each component's own loopback address (all of 127.0.0.0/8 reaches this machine on Linux)."""
    hosts = {
        API_SERVER: "127.0.0.11",
        EXECUTION_API: "127.0.0.12",
        SCHEDULER: "127.0.0.13",
        DAG_PROCESSOR: "127.0.0.14",
    }
    hosts.update({name: f"127.0.0.{20 + number}" for number, name in enumerate(triggerers, start=1)})
    hosts.update({name: f"127.0.0.{30 + number}" for number, name in enumerate(workers, start=1)})
    return hosts

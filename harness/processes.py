"""The OS processes of a cluster: Airflow's components, ``airflow`` CLI runs and the task processes they spawn.

A component is a :class:`ComponentSpec` (its name, the CLI words that start it, where it is reached, how it
is seen to be healthy); :class:`Processes` launches, health-checks, signals, restarts and stops them, runs
``airflow db migrate`` and other CLI commands, and finds the processes running a task. :func:`cluster_env` builds
the environment every process gets (every setting as an ``AIRFLOW__*`` variable).

Which processes belong to a cluster: every component is started with ``cwd=home`` in its own
session/process group, and Airflow never calls ``chdir``, so every process the cluster spawns
(LocalExecutor workers, task supervisors, task runners -- which Airflow puts in a process group
of their own --, DAG-file parsers, the trigger runner) has ``home`` as its working directory.
Environment variables cannot be used as a marker: ``setproctitle`` overwrites
``/proc/<pid>/environ``. :meth:`Processes.stop` therefore terminates each component's
process tree and then sweeps for any process whose cwd is ``home``; it reports any that survive.
(So do not keep a shell of your own inside ``home`` while a cluster stops.)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import httpx
import psutil

from harness.common import ClusterError, ClusterStartError, ClusterTimeout, normalize_uuid
from harness.metadata_db import MetadataDB, parse_db_time

Component = Literal["api-server", "execution-api", "scheduler", "dag-processor", "triggerer"]
ALL_COMPONENTS: tuple[Component, ...] = ("api-server", "execution-api", "scheduler", "dag-processor", "triggerer")

# The CLI sub-command behind each component. Serving logs is skipped: every process shares
# the local log folder, and the log servers would otherwise bind fixed ports (8793/8794) that
# collide between clusters running side by side.
#
# The public REST API ("api-server") and the execution API the task runners call ("execution-api")
# run as two api-server processes. In one process they deadlock on SQLite: a REST write's audit-log
# dependency (``action_logging``) is async and commits synchronously on the event loop. If an
# execution-API request in the same process has written and waits for that loop to run its session's
# exit (the commit), the loop waits for that request's write lock until SQLite's busy timeout and the
# REST call fails with "Database error". Seen with py-spy while tasks ran: the loop in ``log_action``'s
# commit, every worker thread idle, the call failing after exactly the busy timeout. Apart, each
# process's writes commit without the other's event loop.
_COMMANDS: dict[Component, tuple[str, ...]] = {
    "api-server": ("api-server", "--apps", "core"),
    "execution-api": ("api-server", "--apps", "execution"),
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer", "--skip-serve-logs"),
}
# Each api-server listens on its own port (:attr:`AirflowCluster.api_ports`) and answers its health here.
_HEALTH_PATHS: dict[Component, str] = {
    "api-server": "/api/v2/monitor/health",
    "execution-api": "/execution/health",
}
_JOB_TYPES: dict[Component, str] = {
    "scheduler": "SchedulerJob",
    "dag-processor": "DagProcessorJob",
    "triggerer": "TriggererJob",
}

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT = 120.0
DEFAULT_STOP_GRACE = 10.0
HEARTBEAT_SEC = 1
# A job whose heartbeat is older than this is considered dead (health endpoint, trigger
# re-assignment after a triggerer dies, adoption of a dead scheduler's tasks).
HEALTH_CHECK_THRESHOLD_SEC = 10
# A scheduler is given longer: on a loaded 2-core machine a whole process can stall for 10-12 s (its
# heartbeat then "recovers after 10 s"), and a scheduler declared dead resets its own queued tasks.
SCHEDULER_HEALTH_CHECK_THRESHOLD_SEC = 30
TASK_HEARTBEAT_TIMEOUT_SEC = 30
_CONFIG_FILE_TEXT = """\
# Written by harness/processes.py. Every setting comes from AIRFLOW__* environment
# variables (AirflowCluster.env); an empty file keeps Airflow from generating a default one.
"""
# Settings that differ between clusters but do not change what `airflow db migrate` writes
# (it writes the schema, the default pool and the log filename templates).
_PER_CLUSTER_SETTINGS = frozenset(
    {
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API__PORT",
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH",
    }
)
# ``airflow worker -- LocalExecutor: <ti id>`` is the LocalExecutor worker while it supervises a
# task; ``airflow worker -- <ti id>`` is the forked task runner (see BaseExecutor.run_workload and
# airflow.sdk.execution_time.task_runner.startup).
_SUPERVISOR_TITLE = re.compile(r"^airflow worker -- LocalExecutor(?: \[[^\]]*\])?: (?P<ti_id>[0-9a-f-]{32,36})$")
_TASK_RUNNER_TITLE = re.compile(r"^airflow worker -- (?P<ti_id>[0-9a-f-]{32,36})$")


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentSpec:
    """One Airflow process of a cluster: how it is started and how it is seen to be healthy.

    A cluster runs a list of these, one per process; its name is unique in the cluster and names its log
    (``logs/<name>.log``). More workers or triggerers are more entries, each with a name, a hostname and (where
    Airflow serves logs from it) a log-server port of its own.
    """

    name: str
    command: tuple[str, ...]  # the words after ``airflow``
    hostname: str = LOOPBACK  # where it is reached; every component runs on this machine today
    port: int | None = None  # an api-server's ``--port``
    health_path: str | None = None  # healthy when ``http://<hostname>:<port><health_path>`` answers 200
    job_type: str | None = None  # or: healthy while the ``job`` row of this type it started heartbeats
    # The port it serves task logs on, for the commands Airflow lets serve logs (scheduler, triggerer, workers).
    # None: it serves none (its command says ``--skip-serve-logs``), as the single-node cluster's components do.
    log_server_port: int | None = None
    # Settings of its own on top of the cluster's environment (its hostname, its log-server port).
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The hostname Airflow records for it (its ``job`` row, the task instances it runs); None: the machine's.
    # With ``job_type``, only a job row with this hostname counts as its own.
    airflow_hostname: str | None = None
    # Or: healthy once this text is in its log after its launch (a Celery worker's "ready.").
    ready_text: str | None = None

    def __post_init__(self) -> None:
        if self.health_url is None and self.job_type is None and self.ready_text is None:
            raise ValueError(f"{self.name}: a component needs a port and a health_path, a job_type or a ready_text")

    @property
    def health_url(self) -> str | None:
        if self.port is None or self.health_path is None:
            return None
        return f"http://{self.hostname}:{self.port}{self.health_path}"

    def argv(self, python: str) -> list[str]:
        """The command line that starts it with ``python``."""
        argv = [python, "-m", "airflow", *self.command]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        return argv


def component_spec(name: Component, api_ports: Mapping[Component, int]) -> ComponentSpec:
    """How a cluster runs one of the components it has today (``api_ports``: the api-servers' ports)."""
    return ComponentSpec(
        name,
        _COMMANDS[name],
        port=api_ports.get(name),
        health_path=_HEALTH_PATHS.get(name),
        job_type=_JOB_TYPES.get(name),
    )


# --------------------------------------------------------------------------------------------
# Settings and environment
# --------------------------------------------------------------------------------------------


def _airflow_settings(
    *,
    home: Path,
    dags_folder: Path,
    api_port: int,
    execution_port: int,
    parallelism: int,
    fernet_key: str,
    jwt_secret: str,
    api_secret_key: str,
) -> dict[str, str]:
    """Every Airflow setting the harness relies on, as ``AIRFLOW__SECTION__KEY`` variables."""
    base_url = f"http://127.0.0.1:{api_port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        # [core]
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor forks `parallelism` workers up front; keep the pool small on a small box.
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": fernet_key,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{execution_port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        # Every request is treated as coming from an admin: the REST API needs no token.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_passwords.json"),
        # [database]
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # [api] -- one uvicorn worker per api-server on loopback; the same secrets for every process
        # so JWTs minted by the scheduler validate in the execution-api server.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": api_secret_key,
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        # [logging] -- JSON lines are what worker_runs() parses.
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__JSON_LOGS": "True",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        # [dag_processor] -- see new files within seconds, re-parse changed ones every 10 s.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "bundles"),
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
        "AIRFLOW__DAG_PROCESSOR__HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_THRESHOLD_SEC),
        # [scheduler] -- fast loop, fast detection of dead schedulers and dead task processes.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": str(HEARTBEAT_SEC),
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": str(HEARTBEAT_SEC),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": str(SCHEDULER_HEALTH_CHECK_THRESHOLD_SEC),
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT_SEC),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # [triggerer] -- a killed triggerer's triggers are re-assigned after the threshold.
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(HEARTBEAT_SEC),
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_THRESHOLD_SEC),
        # Installed but unconfigured; keep it from adding work and noise to every task.
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",
        "PYTHONUNBUFFERED": "1",
    }


def _inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without anything that configures Airflow."""
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith(("AIRFLOW", "_AIRFLOW")) and name != "PYTHONPATH"
    }


def _prepend_path(entries: Sequence[Path], existing: str | None) -> str:
    parts = [str(entry) for entry in entries]
    if existing:
        parts.append(existing)
    return os.pathsep.join(parts)


def cluster_env(
    *,
    home: Path,
    dags_folder: Path,
    api_port: int,
    execution_port: int,
    parallelism: int,
    fernet_key: str,
    python_path: Sequence[Path],
    extra_env: Mapping[str, str],
) -> dict[str, str]:
    """The environment of every process of a cluster: this one's without Airflow's settings, then the harness's
    settings (fresh JWT and API secrets), ``python_path`` before ``PYTHONPATH``, and ``extra_env`` last."""
    env = _inherited_environment(os.environ)
    env.update(
        _airflow_settings(
            home=home,
            dags_folder=dags_folder,
            api_port=api_port,
            execution_port=execution_port,
            parallelism=parallelism,
            fernet_key=fernet_key,
            # 64 bytes: PyJWT warns about shorter HMAC keys for SHA512.
            jwt_secret=secrets.token_urlsafe(64),
            api_secret_key=secrets.token_urlsafe(32),
        )
    )
    env["PYTHONPATH"] = _prepend_path(python_path, os.environ.get("PYTHONPATH"))
    env.update(extra_env)
    return env


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


# --------------------------------------------------------------------------------------------
# Migrated databases
# --------------------------------------------------------------------------------------------

# Freshly migrated databases, by _migration_key, shared by the clusters of this process.
_MIGRATED_DBS: dict[str, Path] = {}
_MIGRATED_DB_DIR: list[Path] = []  # created on first use, removed at exit


def _migration_key(python: str, env: Mapping[str, str]) -> str:
    """Clusters with equal keys get byte-identical databases from ``airflow db migrate``."""
    settings = sorted(
        (name, value)
        for name, value in env.items()
        if name.startswith("AIRFLOW__") and name not in _PER_CLUSTER_SETTINGS
    )
    return hashlib.sha256(json.dumps([python, settings]).encode()).hexdigest()[:16]


def _migrated_db_dir() -> Path:
    if not _MIGRATED_DB_DIR:
        _MIGRATED_DB_DIR.append(Path(tempfile.mkdtemp(prefix="airflow-cluster-migrated-")))
    return _MIGRATED_DB_DIR[0]


@atexit.register
def _remove_migrated_dbs() -> None:  # registered before airflow_cluster's exit hook, so it runs after it
    for directory in _MIGRATED_DB_DIR:
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Process trees
# --------------------------------------------------------------------------------------------


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def _process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its live descendants (empty when ``pid`` is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def processes_in(home: Path) -> list[psutil.Process]:
    """Every live process (but this one and its parents) whose working directory is ``home``."""
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in own:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()) == home:
                found.append(proc)
    return found


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> list[int]:
    signalled = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
            signalled.append(proc.pid)
    return signalled


def _terminate(
    procs: list[psutil.Process], first: list[psutil.Process], grace: float
) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """SIGTERM ``first``, wait ``grace`` seconds for all of ``procs``, SIGKILL the rest.

    Returns the processes that needed SIGKILL and those still alive afterwards (should be none).
    """
    _signal_all(first, signal.SIGTERM)
    _, forced = psutil.wait_procs(procs, timeout=grace)
    _signal_all(forced, signal.SIGKILL)
    _, alive = psutil.wait_procs(forced, timeout=5)
    return list(forced), list(alive)


def _log_has(path: Path, offset: int, text: str) -> bool:
    """Whether ``text`` is in the file after ``offset`` (what this launch wrote)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return text.encode() in handle.read()
    except OSError:
        return False


@dataclass
class _RunningComponent:
    name: str
    popen: subprocess.Popen[bytes]
    launched_at: datetime
    log_handle: IO[bytes]
    log_offset: int = 0  # the size of its log when it was launched
    # Descendants seen so far: a child that outlives its parent is re-parented and would
    # otherwise drop out of the tree.
    known: dict[int, psutil.Process] = field(default_factory=dict)

    def note(self, text: str) -> None:
        """Add a harness line to the component's log, so the log tells the whole story."""
        with contextlib.suppress(ValueError, OSError):  # closed handle
            self.log_handle.write(f"--- harness: {datetime.now(UTC).isoformat()} {text}\n".encode())
            self.log_handle.flush()

    def refresh(self) -> list[psutil.Process]:
        for proc in _process_tree(self.popen.pid):
            self.known.setdefault(proc.pid, proc)
        alive = []
        for pid, proc in list(self.known.items()):
            try:
                running = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                running = False
            if running:
                alive.append(proc)
            else:
                del self.known[pid]
        return alive


# --------------------------------------------------------------------------------------------
# Task processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskProcess:
    """A process running a task: the LocalExecutor worker supervising it, or the task runner."""

    pid: int
    role: Literal["supervisor", "task-runner"]
    ti_id: str
    title: str


def _classify_title(pid: int, title: str) -> TaskProcess | None:
    """A :class:`TaskProcess` when ``title`` is a task supervisor's or task runner's."""
    if match := _SUPERVISOR_TITLE.match(title):
        return TaskProcess(pid, "supervisor", normalize_uuid(match["ti_id"]), title)
    if match := _TASK_RUNNER_TITLE.match(title):
        return TaskProcess(pid, "task-runner", normalize_uuid(match["ti_id"]), title)
    return None


# --------------------------------------------------------------------------------------------
# The processes of one cluster
# --------------------------------------------------------------------------------------------


class Processes:
    """Starts, watches, signals and stops the processes of one cluster in ``home``.

    :param home: the cluster's ``AIRFLOW_HOME``: every process runs with it as its working directory;
        component logs go to ``home/logs/<name>.log``.
    :param env: the environment of every process (see :func:`cluster_env`); read, never changed.
    :param specs: the components that can be launched, by :attr:`ComponentSpec.name`.
    :param db: the metadata DB, read for job heartbeats and task-instance ids.
    :param python: interpreter used for ``python -m airflow``.
    :param reuse_migrated_db: :meth:`migrate` copies the database a previous cluster of this process got from
        ``airflow db migrate`` (same interpreter and settings) instead of migrating again.
    """

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str],
        specs: Iterable[ComponentSpec],
        db: MetadataDB,
        *,
        python: str = sys.executable,
        reuse_migrated_db: bool = True,
    ) -> None:
        self.home = home
        self.logs_dir = home / "logs"
        self.specs = {spec.name: spec for spec in specs}
        self.python = python
        self.reuse_migrated_db = reuse_migrated_db
        self._env = env
        self._db = db
        self._running: dict[str, _RunningComponent] = {}

    def component_log(self, name: str) -> Path:
        """The file a component's stdout and stderr go to (appended to across restarts)."""
        return self.logs_dir / f"{name}.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def check_no_strays(self) -> None:
        """Raise :class:`ClusterStartError` if a process already runs in ``home``."""
        strays = processes_in(self.home)
        if strays:
            raise ClusterStartError(
                f"processes already run in {self.home}: {[p.pid for p in strays]}; "
                "stop them (AirflowCluster.kill_strays) or use a fresh home"
            )

    def stop(self, grace: float = DEFAULT_STOP_GRACE) -> list[int]:
        """Stop every component (SIGTERM, SIGKILL after ``grace`` s), then SIGKILL anything else in ``home``.

        Returns the pids of the processes that survived SIGKILL (should be none).
        """
        survivors = self._stop_components(list(self._running.values()), grace)
        # Anything else with our home as cwd: task runners orphaned by a killed worker,
        # `run_cli` children, processes of a component killed earlier.
        survivors += _terminate(processes_in(self.home), [], 0)[1]
        left = [proc.pid for proc in survivors if proc.is_running()] + [proc.pid for proc in processes_in(self.home)]
        return sorted(set(left))

    def _stop_components(self, components: list[_RunningComponent], grace: float) -> list[psutil.Process]:
        """SIGTERM each component's main process, SIGKILL whatever of its tree is left after ``grace``."""
        procs: dict[int, psutil.Process] = {}
        owners: dict[int, _RunningComponent] = {}
        for component in components:
            component.note(f"stopping: SIGTERM, SIGKILL after {grace:g}s")
            for proc in component.refresh():
                procs[proc.pid] = proc
                owners[proc.pid] = component
        mains = [procs[c.popen.pid] for c in components if c.popen.pid in procs]
        forced, survivors = _terminate(list(procs.values()), mains, grace)
        for proc in forced:
            owners[proc.pid].note(f"pid {proc.pid} still alive after {grace:g}s: sent SIGKILL")
        for component in components:
            self._forget(component)
        return survivors

    @staticmethod
    def kill_strays(home: Path) -> list[int]:
        """SIGKILL every process whose working directory is ``home`` (left by a crashed run)."""
        procs = processes_in(home.resolve())
        _terminate(procs, [], 0)
        return [proc.pid for proc in procs]

    def migrate(self) -> float:
        """``airflow db migrate``, or a copy of a database it produced earlier in this process; returns seconds."""
        began = time.monotonic()
        log = self.logs_dir / "db-migrate.log"
        config = Path(self._env["AIRFLOW_CONFIG"])
        if not config.exists():
            config.write_text(_CONFIG_FILE_TEXT)
        key = _migration_key(self.python, self._env)
        cached = _MIGRATED_DBS.get(key) if self.reuse_migrated_db else None
        if cached is not None and cached.exists() and not self._db.path.exists():
            shutil.copyfile(cached, self._db.path)
            log.write_text(f"copied {cached}, migrated earlier by this process\n")
        else:
            result = self.run_cli("db", "migrate", timeout=300)
            log.write_text(result.stdout + result.stderr)
            if result.returncode != 0:
                raise ClusterStartError(f"airflow db migrate failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
            wal = self.home / "airflow.db-wal"
            if self.reuse_migrated_db and key not in _MIGRATED_DBS and not (wal.exists() and wal.stat().st_size):
                # The migrating process has exited and its WAL is checkpointed: the file is complete.
                copy = _migrated_db_dir() / f"{key}.db"
                shutil.copyfile(self._db.path, copy)
                _MIGRATED_DBS[key] = copy
        return time.monotonic() - began

    def launch(self, name: str) -> None:
        """Start the component ``name`` (its log is appended to)."""
        spec = self.specs[name]
        log_path = self.component_log(name)
        log_handle = log_path.open("ab")
        log_offset = log_handle.tell()
        argv = spec.argv(self.python)
        # argv is fixed above; start_new_session puts the component in its own process group.
        popen = subprocess.Popen(
            argv,
            cwd=self.home,
            env={**self._env, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._running[name] = component = _RunningComponent(name, popen, datetime.now(UTC), log_handle, log_offset)
        component.note(f"started {name} as pid {popen.pid}")

    def _forget(self, component: _RunningComponent) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.popen.wait(timeout=5)
        component.log_handle.close()
        self._running.pop(component.name, None)

    # -- health ------------------------------------------------------------------------------

    def wait_healthy(self, names: Sequence[str], timeout: float) -> None:
        """Wait until every component in ``names`` is healthy; :class:`ClusterStartError` if one exits or
        ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for name in sorted(pending):
                component = self._running.get(name)
                if component is None or component.popen.poll() is not None:
                    code = None if component is None else component.popen.returncode
                    raise ClusterStartError(
                        f"{name} exited with {code} during startup; log tail:\n{tail(self.component_log(name))}"
                    )
                if self._is_healthy(component):
                    pending.discard(name)
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"== {n} ==\n{tail(self.component_log(n), 15)}" for n in sorted(pending))
                raise ClusterStartError(f"not healthy after {timeout:.0f}s: {sorted(pending)}\n{tails}")
            time.sleep(0.25)

    def _is_healthy(self, component: _RunningComponent) -> bool:
        spec = self.specs[component.name]
        if spec.health_url is not None:
            try:
                return httpx.get(spec.health_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        if spec.ready_text is not None:
            return _log_has(self.component_log(component.name), component.log_offset, spec.ready_text)
        sql = "SELECT state, start_date, latest_heartbeat FROM job WHERE job_type = ?"
        params: tuple[str, ...] = (str(spec.job_type),)
        if spec.airflow_hostname is not None:
            sql += " AND hostname = ?"
            params += (spec.airflow_hostname,)
        try:
            rows = self._db.query(sql + " ORDER BY id DESC LIMIT 1", params)
        except self._db.errors:  # DB not migrated yet, briefly busy or restarting
            return False
        if not rows or rows[0]["state"] != "running":
            return False
        started = parse_db_time(rows[0]["start_date"])
        heartbeat = parse_db_time(rows[0]["latest_heartbeat"])
        # A job row older than this launch belongs to a previous (killed) instance.
        launched = component.launched_at.timestamp() - 1
        return (
            started is not None
            and heartbeat is not None
            and started.timestamp() >= launched
            and time.time() - heartbeat.timestamp() < HEALTH_CHECK_THRESHOLD_SEC
        )

    # -- CLI ---------------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` in ``home`` with the cluster's environment; never raises on exit codes.

        Works with or without running components. On timeout the whole process tree is killed and
        :class:`ClusterTimeout` is raised.
        """
        argv = [self.python, "-m", "airflow", *args]
        # argv is ours plus CLI words chosen by the test; no shell is involved.
        proc = subprocess.Popen(
            argv,
            cwd=self.home,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            tree = _process_tree(proc.pid)
            _signal_all(tree, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise ClusterTimeout(
                f"airflow {' '.join(args)} timed out after {timeout}s:\n{stdout[-2000:]}{stderr[-2000:]}"
            ) from err
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

    # -- faults ------------------------------------------------------------------------------

    def pids(self, name: str) -> list[int]:
        """The component's main pid followed by its live descendants (``[]`` if not running)."""
        running = self._running.get(name)
        if running is None:
            return []
        return [proc.pid for proc in sorted(running.refresh(), key=lambda p: p.pid != running.popen.pid)]

    def is_running(self, name: str) -> bool:
        running = self._running.get(name)
        return running is not None and running.popen.poll() is None

    def exit_code(self, name: str) -> int | None:
        """How the component's process exited (None: it runs, or the harness stopped or killed it)."""
        running = self._running.get(name)
        return None if running is None else running.popen.poll()

    def kill(self, name: str, sig: int = signal.SIGKILL, *, tree: bool = True) -> list[int]:
        """Send ``sig`` to the component (and by default every process it started).

        With SIGKILL the component counts as stopped afterwards; :meth:`restart` brings it back.
        Returns the pids signalled.
        """
        running = self._running.get(name)
        if running is None:
            raise ClusterError(f"{name} is not running")
        procs = running.refresh()
        main = [p for p in procs if p.pid == running.popen.pid]
        targets = main + [p for p in procs if p.pid != running.popen.pid] if tree else main
        signalled = _signal_all(targets, sig)
        running.note(f"{signal.Signals(sig).name} sent to {signalled}")
        if sig == signal.SIGKILL:
            psutil.wait_procs(targets, timeout=5)
            self._forget(running)
        return signalled

    def restart(self, name: str, timeout: float = 60.0, grace: float = DEFAULT_STOP_GRACE) -> float:
        """Stop the component if it runs, start it again, wait until healthy; returns seconds."""
        began = time.monotonic()
        running = self._running.get(name)
        if running is not None:
            self._stop_components([running], grace)
        self.launch(name)
        try:
            self.wait_healthy([name], timeout)
        except ClusterStartError:
            if self.is_running(name):
                self.kill(name)
            raise
        return time.monotonic() - began

    def task_processes(
        self,
        dag_id: str | None = None,
        task_id: str | None = None,
        *,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> list[TaskProcess]:
        """Processes running matching task instances right now.

        A LocalExecutor worker sets its title to ``airflow worker -- LocalExecutor: <ti id>``
        while it supervises a task, and the task runner it forks calls itself
        ``airflow worker -- <ti id>``. Those titles are matched against the ids of the
        task instances (current and previous tries) selected by the filters, and only
        processes whose working directory is this cluster's home are considered.
        """
        wanted = {
            ti_id
            for ti_id, (key, _) in self._db.ti_keys_by_id().items()
            if (dag_id is None or key.dag_id == dag_id)
            and (task_id is None or key.task_id == task_id)
            and (run_id is None or key.run_id == run_id)
            and (map_index is None or key.map_index == map_index)
        }
        found = []
        for proc in processes_in(self.home):
            with contextlib.suppress(psutil.Error):
                title = " ".join(part for part in proc.cmdline() if part)
                process = _classify_title(proc.pid, title)
                if process is not None and process.ti_id in wanted:
                    found.append(process)
        return sorted(found, key=lambda p: (p.ti_id, p.role != "supervisor"))

    def kill_task_processes(
        self,
        dag_id: str | None = None,
        task_id: str | None = None,
        sig: int = signal.SIGKILL,
        *,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> list[TaskProcess]:
        """Signal the supervisor and the task runner of matching task instances.

        Supervisors are signalled before their task runners so a dying runner cannot be
        reported by its supervisor first. Returns the processes signalled (see
        :meth:`task_processes` for what matches).
        """
        targets = self.task_processes(dag_id, task_id, run_id=run_id, map_index=map_index)
        signalled = []
        for target in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target.pid, sig)
                signalled.append(target)
        return signalled

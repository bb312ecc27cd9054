"""The services a distributed cluster needs besides Airflow: PostgreSQL (the metadata DB and Celery's result
backend) and Redis (Celery's broker), each a private instance the harness starts and stops.

Both come from Debian's packages (``postgresql``, ``redis-server``; ``scripts/install-distributed-deps.sh``
installs them when missing). Each instance lives in a directory of its own (its data, its configuration, its
log), listens on a free port on 127.0.0.1 only, needs a password made for it, and runs in the foreground as a
child of the harness, in its own session. Neither touches a system-wide instance or its port::

    with PostgresServer(tmp / "postgres") as pg, RedisServer(tmp / "redis") as redis:
        pg.sqlalchemy_url   # postgresql+psycopg2://airflow:...@127.0.0.1:PORT/airflow
        redis.url           # redis://:...@127.0.0.1:PORT/0

PostgreSQL refuses to run as root. As root the server runs as the ``postgres`` user (which Debian's package
creates), and since a directory root made is usually not open to that user (pytest's ``/tmp/pytest-of-root``
is mode 0700), its data directory is then made with :func:`tempfile.mkdtemp` and linked from
``<directory>/data``; it is removed when the server is stopped. The log stays in ``<directory>``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from harness.common import ClusterStartError

LOOPBACK = "127.0.0.1"
INSTALL_HINT = "run scripts/install-distributed-deps.sh (as root: it installs Debian's postgresql and redis-server)"
POSTGRES_USER = "postgres"  # the system user the server runs as when the harness runs as root


def _free_port() -> int:
    from harness.processes import free_ports

    return free_ports(1)[0]


def postgres_bin_dir() -> Path:
    """The directory of ``initdb`` and ``postgres``: ``$HARNESS_PG_BIN``, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``, else the one ``initdb`` on ``PATH`` is in."""
    override = os.environ.get("HARNESS_PG_BIN")
    candidates = [Path(override)] if override else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    raise ClusterStartError(f"no PostgreSQL server binaries (initdb, postgres) found; {INSTALL_HINT}")


def redis_server_binary() -> Path:
    found = os.environ.get("HARNESS_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise ClusterStartError(f"no redis-server found; {INSTALL_HINT}")
    return Path(found)


def _wait_for(check: Any, timeout: float, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ClusterStartError(f"{what} exited with {process.returncode}; log tail:\n{_tail(log)}")
        if check():
            return
        if time.monotonic() > deadline:
            raise ClusterStartError(f"{what} did not answer within {timeout:.0f} s; log tail:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<no log at {path}>"


class _Service:
    """One server process in the foreground, its output appended to ``<directory>/<name>.log``."""

    name = "service"

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.log_path = self.directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    def _spawn(self, argv: list[str], *, user: str | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``cwd`` (default: the directory), as ``user`` with only that user's group if given."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log_handle = self.log_path.open("ab")
        self.note(f"starting: {' '.join(argv)}")
        # argv: a server binary of Debian's and its options, no shell.
        self.process = subprocess.Popen(
            argv,
            cwd=cwd or self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_user(user),
        )
        return self.process

    def note(self, text: str) -> None:
        if self._log_handle is not None:
            with contextlib.suppress(ValueError, OSError):
                self._log_handle.write(f"--- harness: {time.strftime('%H:%M:%S')} {text}\n".encode())
                self._log_handle.flush()

    def _end(self, sig: int, timeout: float) -> None:
        """Send ``sig`` to the server, wait up to ``timeout`` s, then SIGKILL its whole session."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.note(f"sending {signal.Signals(sig).name}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.note(f"still running after {timeout:g} s: SIGKILL to its session")
        # Whatever it forked (PostgreSQL's backends) is in its session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self._wait_session_gone(process.pid)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        self.process = None

    @staticmethod
    def _wait_session_gone(sid: int, timeout: float = 10.0) -> None:
        import psutil

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = []
            for proc in psutil.process_iter(["pid"]):
                with contextlib.suppress(psutil.Error, OSError):
                    if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                        left.append(proc)
            if not left:
                return
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            time.sleep(0.1)

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class PostgresServer(_Service):
    """A private PostgreSQL server: ``initdb`` into ``<directory>/data`` on first start, then ``postgres`` in the
    foreground on 127.0.0.1:``port`` (no Unix socket), password authentication (SCRAM) for every connection,
    and a database ``database`` owned by ``user``.

    ``fsync`` is off: a crash of the server process loses nothing (the kernel still has every write), only a
    crash of the machine would, and these servers do not outlive a test. Commits stay synchronous.
    """

    name = "postgres"

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        user: str = "airflow",
        database: str = "airflow",
        max_connections: int = 300,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(directory)
        self.port = port or _free_port()
        self.user = user
        self.database = database
        self.password = secrets.token_urlsafe(24)
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.bin_dir = postgres_bin_dir()
        self.run_as = POSTGRES_USER if os.geteuid() == 0 else None
        self._relocated: Path | None = None

    # -- where to connect --------------------------------------------------------------------

    @property
    def dsn(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``."""
        return {
            "host": LOOPBACK,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
        }

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        """``<directory>/data`` (a link to the real one when the server runs as another user)."""
        return self.directory / "data"

    @property
    def real_data_dir(self) -> Path:
        """Where the server's files are: the server itself is given this path."""
        return self._relocated / "data" if self._relocated is not None else self.data_dir

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Create the cluster on first start, start the server, wait until it answers; create the database."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        created = not (self.data_dir / "PG_VERSION").exists()
        if created:
            self._initdb()
        argv = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.real_data_dir),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"port={self.port}",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"max_connections={self.max_connections}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "log_min_messages=warning",
            "-c",
            "log_line_prefix=%m [%p] ",
        ]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        # A working directory the server can enter (the data directory's parent is its own when relocated).
        process = self._spawn(argv, user=self.run_as, cwd=self.real_data_dir.parent)
        _wait_for(self._answers, timeout, "PostgreSQL", process, self.log_path)
        if created:
            self._create_database()
        return self

    def _initdb(self) -> None:
        data = self.data_dir
        if self.run_as is not None:
            owner = pwd.getpwnam(self.run_as) if _user_exists(self.run_as) else None
            if owner is None:
                raise ClusterStartError(
                    f"PostgreSQL will not run as root and there is no {self.run_as!r} user; {INSTALL_HINT}"
                )
            # A directory of the server's own, reachable by it, linked from ours.
            self._relocated = Path(tempfile.mkdtemp(prefix="harness-postgres-"))
            os.chown(self._relocated, owner.pw_uid, owner.pw_gid)
            if data.is_symlink() or data.exists():
                data.unlink()
            data.symlink_to(self._relocated / "data")
            real = self._relocated / "data"
            password_file = self._relocated / "password"
        else:
            real = data
            password_file = self.directory / ".password"
        password_file.write_text(self.password)
        if self.run_as is not None:
            owner = pwd.getpwnam(self.run_as)
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        password_file.chmod(0o600)
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(real),
            f"--username={self.user}",
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        with self.log_path.open("ab") as log:
            # argv: Debian's initdb and fixed options, no shell.
            result = subprocess.run(
                argv, cwd=real.parent, stdout=log, stderr=subprocess.STDOUT, check=False, **_as_user(self.run_as)
            )
        password_file.unlink()
        if result.returncode != 0:
            raise ClusterStartError(f"initdb failed ({result.returncode}); log tail:\n{_tail(self.log_path)}")

    def _connect(self, dbname: str) -> Any:
        import psycopg2

        return psycopg2.connect(**{**self.dsn, "dbname": dbname}, connect_timeout=3)

    def _answers(self) -> bool:
        import psycopg2

        try:
            self._connect("postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def _create_database(self) -> None:
        connection = self._connect("postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')
        finally:
            connection.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: running transactions are rolled back, clients disconnected); the data stays
        until :meth:`remove`."""
        self._end(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: a crash; the next start recovers from the WAL."""
        self._end(signal.SIGKILL, 0)

    def restart(self, downtime: float = 0.0, *, mode: str = "fast") -> float:
        """Stop (``fast``: SIGINT; ``immediate``: SIGQUIT, recovery on start; ``kill``: SIGKILL), stay down
        ``downtime`` s, start again on the same port; returns the seconds it was not answering."""
        began = time.monotonic()
        if mode == "kill":
            self.kill()
        else:
            self._end(signal.SIGQUIT if mode == "immediate" else signal.SIGINT, 30.0)
        time.sleep(downtime)
        self.start()
        self.restarts += 1
        return time.monotonic() - began

    def remove(self) -> None:
        """Stop, then delete the data directory (the log stays)."""
        self.stop()
        if self._relocated is not None:
            shutil.rmtree(self._relocated, ignore_errors=True)
            self._relocated = None
            with contextlib.suppress(OSError):
                self.data_dir.unlink()
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class RedisServer(_Service):
    """A private Redis server: ``redis-server`` in the foreground with a configuration file of its own (loopback,
    a free port, a password, no persistence, no daemon)."""

    name = "redis"

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        super().__init__(directory)
        self.port = port or _free_port()
        self.password = secrets.token_urlsafe(24)
        self.binary = redis_server_binary()

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.directory / "redis.conf"

    def start(self, timeout: float = 30.0) -> RedisServer:
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "\n".join(
                [
                    "# Written by harness/services.py: a private instance for one test cluster.",
                    f"bind {LOOPBACK}",
                    f"port {self.port}",
                    "daemonize no",
                    "supervised no",
                    'logfile ""',
                    f"dir {self.directory}",
                    'save ""',
                    "appendonly no",
                    "protected-mode yes",
                    f"requirepass {self.password}",
                    "",
                ]
            )
        )
        self.config_path.chmod(0o600)
        process = self._spawn([str(self.binary), str(self.config_path)])
        _wait_for(self._answers, timeout, "Redis", process, self.log_path)
        return self

    def _answers(self) -> bool:
        import socket

        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                answer = b""
                while b"PONG" not in answer and len(answer) < 200:
                    chunk = sock.recv(100)
                    if not chunk:
                        break
                    answer += chunk
                return b"PONG" in answer
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        self._end(signal.SIGTERM, timeout)

    def restart(self, downtime: float = 0.0) -> float:
        began = time.monotonic()
        self.stop()
        time.sleep(downtime)
        self.start()
        self.restarts += 1
        return time.monotonic() - began


def _as_user(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user`` with only that user's primary group."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True

"""Running the emulator: in a daemon thread of the current process, or as a subprocess.

Both handles have the same API::

    with EmulatorServer(EmulatorConfig(speed=0.01)) as emulator:      # or EmulatorProcess(...)
        emulator.base_url, emulator.api_key
        emulator.configure(max_concurrent_per_key=1, faults={"server_error_rate": 0.5})
        emulator.stats()["submissions"]["accepted"]
        emulator.jobs()[task_id]["finished"]                           # GET /_emulator/jobs
        emulator.reset()

:class:`EmulatorServer` talks to its emulator directly (through the server's event loop), so it works even with
the admin routes off. :class:`EmulatorProcess` runs ``python -m happyhorse_emulator`` and uses the
admin routes, sending the admin token the child printed at start (``X-Emulator-Token``); it can be killed
(SIGKILL) and restarted on the same port, which with a state file is how crash tests check that jobs survive.
Both handles have ``admin_token`` and ``admin_headers`` for callers that use the admin routes over raw HTTP.

The stats document (``GET /_emulator/stats``); keys appear only as their ``key_id(key)`` (``key-`` and 12 hex
digits of the key's sha256; ``(none)`` for requests without a key), here ``key-5f2b...`` for brevity::

    {"uptime_seconds": 1.2,
     "submissions": {"total": 5, "accepted": 3, "refused": 1, "faulted": 1,
                     "refused_by_status": {"400": 1},
                     "by_key": {"key-5f2b...": {"total": 5, "accepted": 3, "refused": 1, "faulted": 1}}},
     "status_calls": {"total": 40, "not_found": 0, "by_key": {"key-5f2b...": 40}},
     "jobs": {"total": 3, "by_state": {"QUEUED": 0, "IN_PROGRESS": 1, "SUCCESS": 1, "FAILED": 1},
              "by_key": {"key-5f2b...": 3}},
     "duplicate_submissions": 1,
     "duplicated_fingerprints": [{"key_id": "key-5f2b...", "fingerprint": "<sha256 hex>", "count": 2}],
     "peak_concurrent_renders": 2, "peak_concurrent_renders_by_key": {"key-5f2b...": 2},
     "rate_limited": 0,
     "faults": {"total": 1, "by_kind": {"server_error": 1, "server_error_after_create": 0,
                                        "rate_limit_storm": 0, "slow_response": 0,
                                        "drop_after_create": 0, "drop_before_create": 0, "malformed_body": 0,
                                        "status_variant": 0, "unknown_status": 0}},
     "file_downloads": 1, "files_expired": 0}

A fingerprint is the sha256 of the canonical JSON of a request body (sorted keys, compact, UTF-8), counted per
key; ``duplicate_submissions`` counts accepted submissions beyond the first of each fingerprint.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn

from .app import Emulator, EmulatorApp
from .config import ADMIN_TOKEN_HEADER, EmulatorConfig

_T = TypeVar("_T")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_LOOPBACK = "127.0.0.1"
STARTUP_LINE = re.compile(r"listening on (?P<url>http://\S+) \(api key: (?P<key>\S+)\)")
"""The CLI's first line: ``happyhorse-emulator listening on http://127.0.0.1:8765 (api key: emulator-demo-key)``."""
ADMIN_LINE = re.compile(r"happyhorse-emulator admin (?:token: (?P<token>\S+)|routes: (?P<routes>off|open))")
"""The CLI's second line: ``happyhorse-emulator admin token: <token> (send it as X-Emulator-Token ...)``, or
``happyhorse-emulator admin routes: off`` (``--no-admin-routes``) or ``... admin routes: open`` (no token)."""


def uvicorn_config(
    app: EmulatorApp, *, access_log: bool = False, log_level: str = "warning", **extra: Any
) -> uvicorn.Config:
    """The server settings every runner uses: httptools and uvloop when installed, no access log."""
    return uvicorn.Config(
        app,
        http="auto",
        loop="auto",
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        timeout_graceful_shutdown=1,
        **extra,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEADDR (so a restart can take the same port at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def admin_headers(admin_token: str | None) -> dict[str, str]:
    """The headers of an admin call (none when the emulator wants no token)."""
    return {ADMIN_TOKEN_HEADER: admin_token} if admin_token is not None else {}


class _AdminOverHttp:
    """stats/reset/configure through the admin routes (needs ``admin_routes``), with the admin token."""

    base_url: str
    admin_token: str | None

    @property
    def admin_headers(self) -> dict[str, str]:
        """``{"X-Emulator-Token": <admin token>}`` for callers of the admin routes over raw HTTP."""
        return admin_headers(self.admin_token)

    def _admin(self, method: str, path: str, payload: object | None = None) -> Any:
        with httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False, headers=self.admin_headers) as client:
            # POST admin routes take JSON only: even a body-less reset says so.
            response = client.request(method, path, json={} if payload is None and method == "POST" else payload)
        if response.status_code == 404:
            raise RuntimeError(f"{path}: the emulator's admin routes are off")
        if response.status_code == 401:
            raise RuntimeError(f"{path}: the emulator refused the admin token")
        response.raise_for_status()
        return response.json()


class EmulatorServer:
    """The emulator in a daemon thread of this process, on a free loopback port (or ``port``)."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = _LOOPBACK,
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.initial_config = config or EmulatorConfig()
        self.app = EmulatorApp(Emulator(self.initial_config), bind_host=host)
        self._host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def emulator(self) -> Emulator:
        return self.app.emulator

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the emulator is not running")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self.emulator.config.primary_api_key

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    @property
    def admin_token(self) -> str | None:
        """What the admin routes want in ``X-Emulator-Token`` (this handle's own admin calls need none)."""
        return self.emulator.admin_token

    @property
    def admin_headers(self) -> dict[str, str]:
        """``{"X-Emulator-Token": <admin token>}`` for callers of the admin routes over raw HTTP."""
        return admin_headers(self.admin_token)

    def start(self) -> EmulatorServer:
        """Bind, serve in a daemon thread, and return once uvicorn is accepting requests."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._error = None
        self._socket = bind_socket(self._host, self._port)
        self._server = uvicorn.Server(uvicorn_config(self.app, log_config=None))
        self._thread = threading.Thread(
            target=self._run, args=(self._server, self._socket), name="happyhorse-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the emulator thread failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the emulator did not start in time")
            time.sleep(0.005)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                self._loop = runner.get_loop()
                runner.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start(); a daemon thread has no one else to tell
            self._error = exc

    def stop(self) -> None:
        """Shut the server down (in-flight slow responses get one second) and free the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._loop = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _on_loop(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the server's event loop (the emulator's state belongs to it)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return function()  # not serving: nobody else touches the state
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:  # handed to the calling thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    def stats(self) -> dict[str, Any]:
        return self._on_loop(self.emulator.stats)

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self._on_loop(self.emulator.job_timelines)

    def reset(self) -> None:
        self._on_loop(self.emulator.reset)

    def configure(self, **partial: Any) -> EmulatorConfig:
        """Partial runtime update, like ``POST /_emulator/config`` (nested ``faults`` may be partial)."""
        return self._on_loop(lambda: self.emulator.configure(partial))

    def set_config(self, config: EmulatorConfig) -> None:
        """Replace the whole configuration (and re-seed)."""
        self._on_loop(lambda: self.emulator.replace_config(config))

    def restore(self) -> None:
        """Back to the configuration it started with, with no jobs and zeroed counters."""

        def restore() -> None:
            self.emulator.replace_config(self.initial_config)
            self.emulator.reset()

        self._on_loop(restore)


# Strong references: a running child must be killed at exit even if its handle was dropped.
_RUNNING: set[EmulatorProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_RUNNING):
        process.kill()


class EmulatorProcess(_AdminOverHttp):
    """The emulator as ``python -m happyhorse_emulator`` in a child process.

    ``config`` is handed over as a ``--config`` file and ``args`` are extra CLI flags (they win over the file);
    ``state_file`` and ``port`` override both. With ``port=0`` the child picks a free port, which ``restart()``
    then keeps. The child's output goes to ``log_file`` (a temporary file by default; see :meth:`log_text`).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        args: Sequence[str] = (),
        state_file: str | os.PathLike[str] | None = None,
        port: int = 0,
        host: str = _LOOPBACK,
        log_file: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.args = list(args)
        self.state_file = os.fspath(state_file) if state_file is not None else None
        self.port = port
        self.host = host
        self.env = env
        self.startup_timeout = startup_timeout
        self._workdir = tempfile.TemporaryDirectory(prefix="happyhorse-emulator-")
        self.log_file = Path(log_file) if log_file is not None else Path(self._workdir.name) / "emulator.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.api_key = ""
        self.admin_token: str | None = None
        """The token the child printed at start (None: its admin routes are off or want none)."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "happyhorse_emulator", "--host", self.host]
        command += ["--port", str(self.port)]
        if self.config is not None:
            config_path = Path(self._workdir.name) / "config.json"
            config_path.write_text(json.dumps(self.config.model_dump(mode="json")), encoding="utf-8")
            command += ["--config", str(config_path)]
        command += self.args
        if self.state_file is not None:
            command += ["--state-file", self.state_file]
        return command

    def start(self) -> EmulatorProcess:
        if self.running:
            raise RuntimeError("already running")
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        # The child must import this very package, whatever its working directory and install state.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_PACKAGE_ROOT), env.get("PYTHONPATH"))))
        with open(self.log_file, "ab") as log:
            offset = log.tell()
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        _RUNNING.add(self)
        try:
            self._wait_until_ready(offset)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_until_ready(self, offset: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        match = admin = None
        while match is None or admin is None:
            if not self.running:
                raise RuntimeError(f"the emulator exited at start-up:\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the emulator did not start in time:\n{self.log_text()[-4000:]}")
            with open(self.log_file, "rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace")
            match, admin = STARTUP_LINE.search(text), ADMIN_LINE.search(text)
            if match is None or admin is None:
                time.sleep(0.02)
        self.base_url = match.group("url")
        self.api_key = match.group("key")
        self.admin_token = admin.group("token")
        self.port = int(self.base_url.rsplit(":", 1)[1])
        # The socket listens before the line is printed; one request proves the server answers.
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                try:
                    client.get(f"{self.base_url}/_emulator/health")
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline or not self.running:
                        raise
                    time.sleep(0.02)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (graceful: the state file is closed), then SIGKILL if it lingers; always reaps the child."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        _RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL, as in a crash (the state file keeps every acknowledged job)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._process = None
        _RUNNING.discard(self)

    def restart(self) -> EmulatorProcess:
        """Stop if running, then start again on the same port (and state file)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "/_emulator/stats")
        return result

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Per task id: created/started/finished (epoch seconds) and ``final_phase``."""
        result: dict[str, dict[str, Any]] = self._admin("GET", "/_emulator/jobs")
        return result

    def reset(self) -> None:
        self._admin("POST", "/_emulator/reset")

    def configure(self, **partial: Any) -> EmulatorConfig:
        """Partial runtime update through ``POST /_emulator/config``."""
        shown = self._admin("POST", "/_emulator/config", partial)
        return EmulatorConfig.model_validate({**shown, "admin_token": self.admin_token})

    def set_config(self, config: EmulatorConfig) -> None:
        """Replace the whole configuration (and re-seed); the state file and the admin token stay the ones it
        started with."""
        exclude = {"state_file", "admin_token"}
        self._admin("POST", "/_emulator/config", config.model_dump(mode="json", exclude=exclude))

    def restore(self) -> None:
        """Back to the configuration it was started with (before CLI ``args``), no jobs, zeroed counters."""
        self.set_config(self.config or EmulatorConfig())
        self.reset()

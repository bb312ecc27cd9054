"""
Fixtures for the client-layer unit tests (models, core, hook, provider info).

- ``connection``: puts a HappyHorse connection in ``AIRFLOW_CONN_HAPPYHORSE_DEFAULT`` (JSON form).
- ``Script``: a scripted HappyHorse for ``httpx.MockTransport``, sync and async alike.
- ``FakeClock``: time that only moves when something "sleeps" (nothing here really sleeps).
- ``LoopbackServer``: a tiny real HTTP/1.1 server on 127.0.0.1 that counts connections, for the tests
  that must go through real transports (pooling, httpcore's own debug logging).

Nothing here is autouse: the other test modules in this folder have their own fixtures.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

# Distinctive and long enough for any masker; every redaction test greps for it.
API_KEY = "hh-live-7Qz3xK9pLm2Vw8Rt"
BASE_URL = "http://hh.test/prefix"
JOB_ID = "n92abc123hh10"


# ---------------------------------------------------------------------------------------------------
# Connections


ConnectionSetter = Callable[..., None]


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback servers are reached directly, whatever proxy the machine sets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> ConnectionSetter:
    """``connection(host=..., password=..., extra={...})`` defines ``happyhorse_default`` (or ``conn_id``)."""

    def define(
        host: str | None = BASE_URL,
        *,
        password: str | None = API_KEY,
        extra: dict[str, Any] | None = None,
        conn_id: str = "happyhorse_default",
        uri: str | None = None,
    ) -> None:
        if uri is not None:
            value = uri
        else:
            fields: dict[str, Any] = {"conn_type": "happyhorse"}
            if host is not None:
                fields["host"] = host
            if password is not None:
                fields["password"] = password
            if extra is not None:
                fields["extra"] = extra
            value = json.dumps(fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    define()
    return define


# ---------------------------------------------------------------------------------------------------
# A scripted server for httpx.MockTransport


def envelope(data: dict[str, Any] | None, *, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def job_data(status: str = "IN_PROGRESS", job_id: str = JOB_ID, **extra: Any) -> dict[str, Any]:
    return {"task_id": job_id, "status": status, "response": None, **extra}


def succeeded_data(job_id: str = JOB_ID, url: str = "https://cdn.hh.test/v/clip.mp4") -> dict[str, Any]:
    return {"task_id": job_id, "status": "SUCCESS", "response": {"resultUrls": [url]}}


Reply = Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """A reply: JSON unless ``body`` is bytes or str (sent as is)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def ok_job(status: str = "IN_PROGRESS", **extra: Any) -> Reply:
    return reply(200, envelope(job_data(status, **extra)))


def fail(exc_type: type[httpx.TransportError], message: str = "scripted failure") -> Reply:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return answer


class Script:
    """
    A HappyHorse whose answers are queued: each request takes the next reply, and once the queue is
    empty every request gets ``then``. Records every request it sees.
    """

    def __init__(self, *replies: Reply, then: Reply | None = None) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.then = then or ok_job()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.replies.popleft() if self.replies else self.then
        return answer(request)

    @property
    def posts(self) -> int:
        return sum(request.method == "POST" for request in self.requests)

    @property
    def gets(self) -> int:
        return sum(request.method == "GET" for request in self.requests)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


# ---------------------------------------------------------------------------------------------------
# Time


# ---------------------------------------------------------------------------------------------------
# A real server on loopback

Responder = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


def canned_job_responder(
    method: str, target: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    payload = json.dumps(envelope(job_data("IN_PROGRESS"))).encode()
    return 200, {"Content-Type": "application/json"}, payload


class LoopbackServer:
    """
    A tiny HTTP/1.1 keep-alive server on 127.0.0.1 (asyncio streams). It counts the connections it
    accepts and the requests it answers, and answers each request through ``responder`` after ``delay``
    seconds of asynchronous waiting.
    """

    def __init__(self, responder: Responder = canned_job_responder, *, delay: float = 0.0) -> None:
        self.responder = responder
        self.delay = delay
        self.connections = 0
        self.open_connections = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._idle = asyncio.Event()
        self._idle.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def wait_until_all_closed(self, timeout: float = 2.0) -> bool:
        """Whether every client connection was closed (by the client) within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return self.open_connections == 0

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        self.open_connections += 1
        self._idle.clear()
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                self.requests.append((method, target, headers))
                if self.delay:
                    await asyncio.sleep(self.delay)
                status, reply_headers, payload = self.responder(method, target, headers, body)
                head_lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}"]
                head_lines += [f"{name}: {value}" for name, value in reply_headers.items()]
                head_lines.append(f"Content-Length: {len(payload)}")
                writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            if not self.open_connections:
                self._idle.set()
            self._writers.discard(writer)
            writer.close()
            self._handlers.discard(task)


@contextmanager
def loopback_server_in_thread(responder: Responder = canned_job_responder) -> Iterator[tuple[LoopbackServer, str]]:
    """The same server on its own event loop in a thread, for sync code under test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loopback-server", daemon=True)
    thread.start()
    server = LoopbackServer(responder)
    try:
        url = asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=5)
        yield server, url
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()

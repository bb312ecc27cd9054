"""
A fault-injecting gateway in front of one emulator, for faults the emulator cannot aim at one endpoint.

The emulator's fault rates apply alike to every endpoint in ``faults_on``, and on ``POST /api/generate`` its
5xx are mostly the ambiguous kind (500/502/504, or 503 without ``Retry-After``, half of them after the job
was created). The fault storm needs the full mix on the status endpoint but only the faults the submission
rule calls safe to retry on the generate endpoint. So the storm's emulator injects its faults on
``/api/status`` only, and this gateway adds, on ``POST /api/generate``, 429 and 503 answers that carry
``Retry-After`` and are given *instead of* forwarding (no job can exist behind them), and, on
``/api/status``, connections dropped mid-answer. Everything else is forwarded unchanged.

It runs uvicorn in a daemon thread of the calling process, like the emulator's ``EmulatorServer``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

_JSON = (b"content-type", b"application/json")
_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive", "accept-encoding"})


class InjectedDrop(Exception):
    """Raised after a partial answer so that uvicorn closes the connection."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedDrop))


@dataclass(frozen=True)
class GatewayFaults:
    """Per-request probabilities. The three are rolled in this order, at most one fault per request."""

    generate_rate_limit_rate: float = 0.0
    """``POST /api/generate`` answered 429 with ``Retry-After`` (not forwarded)."""
    generate_unavailable_rate: float = 0.0
    """``POST /api/generate`` answered 503 with ``Retry-After`` (not forwarded)."""
    status_drop_rate: float = 0.0
    """``GET /api/status`` answered with a connection dropped mid-answer (not forwarded)."""
    retry_after_seconds: int = 1
    seed: int = 0
    dialect: str = "happyhorse"
    """Whose routes and error shape: ``happyhorse`` (``/api/generate``, ``/api/status``) or ``dashscope``
    (``POST /api/v1/services/aigc/video-generation/video-synthesis``, ``GET /api/v1/tasks/{id}``, errors as
    ``{request_id, code, message}``)."""


DASHSCOPE_CREATE = "/api/v1/services/aigc/video-generation/video-synthesis"
DASHSCOPE_TASKS = "/api/v1/tasks/"
# The error codes DashScope gives a 429 and a 503.
DASHSCOPE_CODES = {429: "Throttling.RateQuota", 503: "ServiceUnavailable"}


class FaultGateway:
    """``upstream`` behind ``base_url``; ``stats()`` counts requests and injected faults by endpoint."""

    def __init__(self, upstream: str, faults: GatewayFaults) -> None:
        self.upstream = upstream
        self.faults = faults
        # One random stream per endpoint: the n-th submission meets the same fault whatever the polls do.
        self._rngs = {name: random.Random(f"gateway:{name}:{faults.seed}") for name in ("generate", "status")}
        self._counts: Counter[str] = Counter()
        self._client: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        logger = logging.getLogger("uvicorn.error")
        if not any(isinstance(existing, _QuietDrops) for existing in logger.filters):
            logger.addFilter(_QuietDrops())

    @property
    def base_url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the gateway is not running")
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> FaultGateway:
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=1024)
        config = uvicorn.Config(
            self, lifespan="on", access_log=False, log_level="warning", log_config=None, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        server, sock = self._server, self._socket
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="fault-gateway", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the fault gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None

    # -- ASGI -----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path, method = scope["path"], scope["method"]
        if self._is_generate(path, method):
            self._counts["generate"] += 1
            if self._roll("generate", self.faults.generate_rate_limit_rate):
                self._counts["generate_429_retry_after"] += 1
                await self._answer(send, 429, "too many requests")
                return
            if self._roll("generate", self.faults.generate_unavailable_rate):
                self._counts["generate_503_retry_after"] += 1
                await self._answer(send, 503, "service temporarily unavailable")
                return
            self._counts["generate_forwarded"] += 1
        elif self._is_status(path, method):
            self._counts["status"] += 1
            if self._roll("status", self.faults.status_drop_rate):
                self._counts["status_dropped"] += 1
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [_JSON, (b"content-length", b"256")]}
                )
                await send({"type": "http.response.body", "body": b'{"code": 200, "da', "more_body": True})
                raise InjectedDrop("connection dropped by the gateway")
        await self._forward(scope, body, send)

    def _is_generate(self, path: str, method: str) -> bool:
        created = DASHSCOPE_CREATE if self.faults.dialect == "dashscope" else "/api/generate"
        return path == created and method == "POST"

    def _is_status(self, path: str, method: str) -> bool:
        if self.faults.dialect == "dashscope":
            return path.startswith(DASHSCOPE_TASKS) and method == "GET"
        return path == "/api/status"

    def _roll(self, endpoint: str, rate: float) -> bool:
        return rate > 0 and self._rngs[endpoint].random() < rate

    async def _answer(self, send: Send, status: int, message: str) -> None:
        if self.faults.dialect == "dashscope":
            body = json.dumps({"request_id": "gateway", "code": DASHSCOPE_CODES[status], "message": message}).encode()
        else:
            body = f'{{"code": {status}, "message": "{message}"}}'.encode()
        headers = [_JSON, (b"retry-after", str(self.faults.retry_after_seconds).encode())]
        await _reply(send, status, headers, body)

    async def _forward(self, scope: Scope, body: bytes, send: Send) -> None:
        assert self._client is not None
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        url = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
        try:
            response = await self._client.request(scope["method"], url, headers=headers, content=body)
        except httpx.TransportError as error:
            self._counts["upstream_unreachable"] += 1
            await _reply(send, 502, [_JSON], f'{{"code": 502, "message": "upstream: {type(error).__name__}"}}'.encode())
            return
        answer = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-encoding"
        ]
        await _reply(send, response.status_code, answer, response.content)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(base_url=self.upstream, timeout=120.0, trust_env=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message: dict[str, Any] = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

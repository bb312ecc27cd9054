"""A tiny real HTTP/1.1 server on 127.0.0.1 that counts connections, for tests that need real transports."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from support.service import envelope, job_data

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

    async def wait_until_all_closed(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
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

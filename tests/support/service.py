"""
The one fake HappyHorse of the unit tests, served through ``httpx.MockTransport`` (sync and async): a
job whose life is a function of a :class:`FakeClock`, its result file, and queued answers (faults)
served before the normal ones. ``scripted(...)`` is the same service answering only from its queue.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from support.clock import START, FakeClock
from support.media import render_mp4

# Distinctive and long enough for any masker; every redaction test greps for it.
API_KEY = "hh-live-7Qz3xK9pLm2Vw8Rt"
JOB_ID = "n92abc123hh10"
# The host the service's result URLs name; CONN_JSON's connection points at it.
HOST = "http://hh.test"
BASE_URL = f"{HOST}/prefix"  # for tests of a path prefix
CONN_JSON = json.dumps({"conn_type": "happyhorse", "host": HOST, "password": API_KEY})
# A real MP4 (H.264 + AAC) of what a default request asks for: 5 s, 16:9, with sound.
CLIP = render_mp4(5, 160, 90, True)

# Where the fake service's hosts resolve (``HappyHorseHook(resolve=resolve)``): a public address, so the
# egress check passes them; nothing connects to it, the transport is fake.
PUBLIC_ADDRESS = "93.184.215.14"


def resolve(host: str, port: int | None) -> list[str]:
    return [PUBLIC_ADDRESS]


Reply = Callable[[httpx.Request], httpx.Response]
# The ``connection`` fixture: ``connection(host=..., password=..., extra={...}, conn_id=..., uri=...)``.
ConnectionSetter = Callable[..., None]


# -- bodies -------------------------------------------------------------------------------------------


def envelope(data: dict[str, Any] | None, *, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def job_data(status: str = "IN_PROGRESS", job_id: str = JOB_ID, **extra: Any) -> dict[str, Any]:
    return {"task_id": job_id, "status": status, "response": None, **extra}


def succeeded_data(job_id: str = JOB_ID, url: str = "https://cdn.hh.test/v/clip.mp4") -> dict[str, Any]:
    return {"task_id": job_id, "status": "SUCCESS", "response": {"resultUrls": [url]}}


# -- replies ------------------------------------------------------------------------------------------


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


class ChunkStream(httpx.SyncByteStream):
    """A body sent in chunks; ``fail_after`` drops the connection before that chunk."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index == self.fail_after:
                raise httpx.ReadError("connection reset mid-download")
            yield chunk


def clip_response(body: bytes = CLIP, *, length: int | None = None, fail_after: int | None = None) -> httpx.Response:
    """A result file in 4 KiB chunks; ``length`` overrides Content-Length (a cut body)."""
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    headers = {"Content-Length": str(len(body) if length is None else length), "Content-Type": "video/mp4"}
    return httpx.Response(200, headers=headers, stream=ChunkStream(chunks, fail_after))


def serve_clip(body: bytes = CLIP, *, length: int | None = None, fail_after: int | None = None) -> Reply:
    return lambda request: clip_response(body, length=length, fail_after=fail_after)


# -- the service --------------------------------------------------------------------------------------


@dataclass
class FakeService:
    """
    One job whose status depends on the clock: pending until ``finish_after`` seconds after its
    submission, then final; its result file (any host's ``/files/...``). ``faults`` answer the next API
    requests, in order, ``file_faults`` the next file requests; ``then``, when set, answers every API
    request after the faults instead of the job (a scripted service).
    """

    clock: FakeClock = field(default_factory=FakeClock)
    job_id: str = JOB_ID
    finish_after: float = 60.0
    final_status: str = "SUCCESS"
    pending_status: str = "IN_PROGRESS"
    queued_until: float = 0.0  # QUEUED before this many seconds after submission
    known_after: float = 0.0  # unknown (404) before this many seconds after submission
    error_message: str = "content policy violation"
    submitted_at: datetime = START
    clip: bytes = CLIP
    faults: deque[Reply] = field(default_factory=deque)
    file_faults: deque[Reply] = field(default_factory=deque)
    then: Reply | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    @property
    def posts(self) -> int:
        return sum(1 for request in self.requests if request.method == "POST")

    @property
    def status_calls(self) -> int:
        return sum(1 for request in self.requests if request.url.path.endswith("/api/status"))

    @property
    def downloads(self) -> int:
        return sum(1 for request in self.requests if request.url.path.startswith("/files/"))

    def poll_times(self) -> list[float]:
        """Seconds after START of every status request."""
        return [request.extensions["seen_at"] for request in self.requests if request.url.path.endswith("/api/status")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.extensions["seen_at"] = self.clock.elapsed()
        self.requests.append(request)
        if request.url.path.startswith("/files/"):
            return self.file_faults.popleft()(request) if self.file_faults else clip_response(self.clip)
        if self.faults:
            return self.faults.popleft()(request)
        if self.then is not None:
            return self.then(request)
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return httpx.Response(401, json={"code": 401, "message": "invalid api key"})
        if request.method == "POST":
            self.submitted_at = self.clock.now
            return httpx.Response(200, json=envelope({"task_id": self.job_id, "status": "IN_PROGRESS"}))
        if request.url.params.get("task_id") != self.job_id or self.age() < self.known_after:
            return httpx.Response(404, json={"code": 404, "message": "task not found"})
        return httpx.Response(200, json=self.status_body())

    def age(self) -> float:
        """Seconds since the job was submitted."""
        return (self.clock.now - self.submitted_at).total_seconds()

    def status_body(self) -> dict[str, object]:
        elapsed = self.age()
        if elapsed < self.finish_after:
            status = "QUEUED" if elapsed < self.queued_until else self.pending_status
            return envelope({"task_id": self.job_id, "status": status, "response": None})
        if self.final_status in ("SUCCESS", "COMPLETED"):
            url = f"{HOST}/files/{self.job_id}.mp4"
            return envelope({"task_id": self.job_id, "status": self.final_status, "response": {"resultUrls": [url]}})
        return envelope(
            {"task_id": self.job_id, "status": self.final_status, "response": None, "error_message": self.error_message}
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def scripted(*replies: Reply, then: Reply | None = None) -> FakeService:
    """The service answering each request with the next reply, and after them all with ``then``."""
    return FakeService(faults=deque(replies), then=then or ok_job())

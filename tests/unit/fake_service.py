"""A scripted HappyHorse for unit tests: a job's life as a function of a fake clock, served through
``httpx.MockTransport`` (sync and async). Faults are queued responses served before the normal ones."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
API_KEY = "unit-test-key-0123456789"
CONN_JSON = json.dumps({"conn_type": "happyhorse", "host": "http://hh.test", "password": API_KEY})


@dataclass
class FakeClock:
    now: datetime = START
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def elapsed(self) -> float:
        return (self.now - START).total_seconds()


Fault = Callable[[httpx.Request], httpx.Response]


def envelope(data: dict[str, object], *, code: int = 200, message: str = "success") -> dict[str, object]:
    return {"code": code, "message": message, "data": data}


@dataclass
class FakeService:
    """One job whose status depends on the clock: pending until ``finish_after`` seconds, then final."""

    clock: FakeClock
    job_id: str = "n92abc123hh10"
    finish_after: float = 60.0
    final_status: str = "SUCCESS"
    pending_status: str = "IN_PROGRESS"
    error_message: str = "content policy violation"
    submitted_at: datetime = START
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[httpx.Request] = field(default_factory=list)

    @property
    def posts(self) -> int:
        return sum(1 for request in self.requests if request.method == "POST")

    @property
    def status_calls(self) -> int:
        return sum(1 for request in self.requests if request.method == "GET")

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            return self.faults.popleft()(request)
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return httpx.Response(401, json={"code": 401, "message": "invalid api key"})
        if request.method == "POST":
            self.submitted_at = self.clock.now
            return httpx.Response(200, json=envelope({"task_id": self.job_id, "status": "IN_PROGRESS"}))
        if request.url.params.get("task_id") != self.job_id:
            return httpx.Response(404, json={"code": 404, "message": "task not found"})
        return httpx.Response(200, json=self.status_body())

    def status_body(self) -> dict[str, object]:
        elapsed = (self.clock.now - self.submitted_at).total_seconds()
        if elapsed < self.finish_after:
            return envelope({"task_id": self.job_id, "status": self.pending_status, "response": None})
        if self.final_status in ("SUCCESS", "COMPLETED"):
            url = f"http://hh.test/files/{self.job_id}.mp4"
            return envelope({"task_id": self.job_id, "status": self.final_status, "response": {"resultUrls": [url]}})
        return envelope(
            {"task_id": self.job_id, "status": self.final_status, "response": None, "error_message": self.error_message}
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def respond(status: int, body: object = None, headers: dict[str, str] | None = None) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return fault


def raise_error(exc_type: type[httpx.TransportError]) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        raise exc_type("scripted", request=request)

    return fault


class DictStore:
    """A task state store double with the real accessor's get/set/delete."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.retentions: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        self.values[key] = value
        self.retentions[key] = retention

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeTI:
    dag_id = "daily"
    run_id = "scheduled__2026-11-01T00:00:00+00:00"
    task_id = "video"
    map_index = -1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def make_context(store: DictStore | None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": FakeTI()}
    if store is not None:
        context["task_state_store"] = store
    return context

"""Fixtures for the emulator's own tests: the emulator in a thread, an HTTP client on it with bounded polling
helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from happyhorse_emulator import EmulatorConfig, EmulatorServer

MODEL = "happyhorse-1.0/video"
FINAL_STATUSES = frozenset({"SUCCESS", "COMPLETED", "FAILED", "FAILURE", "CANCELLED"})


class Api:
    """A thin client of the emulator's API for tests: every wait is bounded."""

    def __init__(self, http: httpx.Client, emulator: EmulatorServer) -> None:
        self.http = http
        self.emulator = emulator

    @staticmethod
    def body(**fields: Any) -> dict[str, Any]:
        """A valid text-to-video body; ``fields`` override or add fields."""
        return {"model": MODEL, "prompt": "a horse galloping on a beach at dawn", **fields}

    def generate(self, body: object, **kwargs: Any) -> httpx.Response:
        return self.http.post("/api/generate", json=body, **kwargs)

    def submit(self, **fields: Any) -> str:
        response = self.generate(self.body(**fields))
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["code"] == 200
        task_id: str = payload["data"]["task_id"]
        return task_id

    def status(self, task_id: str) -> dict[str, Any]:
        response = self.http.get("/api/status", params={"task_id": task_id})
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = response.json()
        return payload

    def wait_until_final(self, task_id: str, timeout: float = 5.0) -> tuple[dict[str, Any], list[str]]:
        """Poll every 10 ms (at most ``timeout`` s) until a final status; return it and the statuses seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            payload = self.status(task_id)
            current = payload["data"]["status"]
            if not seen or seen[-1] != current:
                seen.append(current)
            if current in FINAL_STATUSES:
                return payload, seen
            time.sleep(0.01)
        raise AssertionError(f"{task_id} not final after {timeout} s; statuses seen: {seen}")


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One emulator for the whole session, in a thread, on a free 127.0.0.1 port: the demo defaults, 100 times
    faster (a 5 s clip with sound renders in about 0.4 s instead of 42 s)."""
    with EmulatorServer(EmulatorConfig(speed=0.01)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The session emulator with no jobs, zeroed counters and its starting configuration."""
    emulator_server.restore()
    return emulator_server


@pytest.fixture
def http(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    """An httpx client on the freshly reset session emulator, sending its API key and its admin token."""
    with httpx.Client(
        base_url=emulator.base_url,
        headers={"Authorization": f"Bearer {emulator.api_key}", **emulator.admin_headers},
        timeout=5.0,
        trust_env=False,
    ) as client:
        yield client


@pytest.fixture
def api(http: httpx.Client, emulator: EmulatorServer) -> Api:
    return Api(http, emulator)


@pytest.fixture
def fast(emulator: EmulatorServer) -> EmulatorServer:
    """Predictable timing: every render takes exactly 0.2 s (no jitter, no mode/audio factors)."""
    emulator.configure(base_seconds=20.0, per_video_second=0.0, pro_factor=1.0, audio_factor=1.0, jitter=0.0)
    return emulator

"""
A fake of Alibaba Cloud Model Studio's HappyHorse API (the DashScope dialect) for unit tests, served through
``httpx.MockTransport``: queued replies first (``faults``), then one task whose queries answer the statuses of
``statuses`` in turn (the last one repeats), SUCCEEDED with a result URL on the service's host.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from support.service import API_KEY, Reply

TASK_ID = "0385dc79-5ff8-4d82-bcb6-87a3c5f2b9e1"
DS_HOST = "https://dashscope-intl.aliyuncs.com"
CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
VIDEO_URL = "https://dashscope-result.oss-cn-beijing.aliyuncs.com/x/clip.mp4?Expires=1"


def ds_error(status: int, code: str, message: str = "refused", headers: dict[str, str] | None = None) -> Reply:
    body = {"request_id": "req-1", "code": code, "message": message}
    return lambda request: httpx.Response(status, json=body, headers=headers)


def ds_task(status: str, task_id: str = TASK_ID, **output: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"request_id": "req-2", "output": {"task_id": task_id, "task_status": status, **output}}
    if status == "SUCCEEDED":
        body["output"].setdefault("video_url", VIDEO_URL)
        body["usage"] = {"duration": 5, "output_video_duration": 5, "video_count": 1, "SR": 720, "ratio": "16:9"}
    return body


@dataclass
class FakeDashScope:
    statuses: list[str] = field(default_factory=lambda: ["PENDING", "RUNNING", "SUCCEEDED"])
    faults: deque[Reply] = field(default_factory=deque)
    requests: list[httpx.Request] = field(default_factory=list)
    failure: dict[str, str] = field(default_factory=lambda: {"code": "InternalError", "message": "render failed"})

    @property
    def creates(self) -> list[httpx.Request]:
        return [request for request in self.requests if request.url.path == CREATE_PATH]

    @property
    def cancels(self) -> list[httpx.Request]:
        return [request for request in self.requests if request.url.path.endswith("/cancel")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            return self.faults.popleft()(request)
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return ds_error(401, "InvalidApiKey", "Invalid API-key provided.")(request)
        if request.url.path == CREATE_PATH:
            if request.headers.get("x-dashscope-async") != "enable":
                return ds_error(403, "AccessDenied", "current user api does not support synchronous calls")(request)
            return httpx.Response(200, json=ds_task("PENDING"))
        if request.url.path.endswith("/cancel"):
            return httpx.Response(200, json={"request_id": "req-3"})
        if request.url.path != f"/api/v1/tasks/{TASK_ID}":
            return httpx.Response(200, json=ds_task("UNKNOWN", request.url.path.rsplit("/", 1)[-1]))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(200, json=ds_task(status, **(self.failure if status == "FAILED" else {})))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

"""The DashScope dialect over real HTTP: the async header, the answers and statuses (PENDING, RUNNING, SUCCEEDED
with usage, FAILED, CANCELED, UNKNOWN), the error shapes and codes, the account's query limit, cancel of queued
tasks only, clips at the tier's frame, every mode's rules and an edit lasting as long as its source video.

Expectations are written from Alibaba Cloud Model Studio's public pages (HappyHorse API references, "Manage
asynchronous tasks", "Error codes"), not read back from the emulator's constants."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from happyhorse_emulator import EmulatorConfig, EmulatorServer
from happyhorse_emulator.__main__ import build_parser, config_from_args
from happyhorse_emulator.jobs import Job, JobStore
from happyhorse_emulator.video import render_mp4

CREATE = "/api/v1/services/aigc/video-generation/video-synthesis"
ASYNC = {"X-DashScope-Async": "enable"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"}
SECOND_KEY = "second-key-of-the-account"
NO_CREDIT_KEY = "account-in-arrears"
CANCEL_REFUSED = "Failed to cancel the task, please confirm if the task is in PENDING status."
THROTTLED = "Requests rate limit exceeded, please try again later."


@pytest.fixture(scope="module")
def dashscope_server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        dialect="dashscope",
        speed=0.01,
        api_keys=("emulator-demo-key", SECOND_KEY),
        no_credit_keys=(NO_CREDIT_KEY,),
    )
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
def ds(dashscope_server: EmulatorServer) -> EmulatorServer:
    """The DashScope emulator, fresh, with predictable timing (every render takes 0.2 s) and no query limit (the
    tests poll every 10 ms; the limit's own tests set it)."""
    dashscope_server.restore()
    timing = {"base_seconds": 20.0, "per_video_second": 0.0, "pro_factor": 1.0, "audio_factor": 1.0, "jitter": 0.0}
    dashscope_server.configure(**timing, query_limit_per_second=None)
    return dashscope_server


@pytest.fixture
def http(ds: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=ds.base_url, headers={"Authorization": f"Bearer {ds.api_key}"}, timeout=10.0, trust_env=False
    ) as client:
        yield client


def t2v(**parameters: Any) -> dict[str, Any]:
    return {"model": "happyhorse-1.0-t2v", "input": {"prompt": "a horse on a beach"}, "parameters": parameters}


def create(http: httpx.Client, body: dict[str, Any]) -> str:
    response = http.post(CREATE, json=body, headers=ASYNC)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert set(payload) == {"request_id", "output"}
    assert payload["output"]["task_status"] == "PENDING"
    task_id: str = payload["output"]["task_id"]
    assert UUID.match(task_id)
    return task_id


def query(http: httpx.Client, task_id: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def wait(http: httpx.Client, task_id: str, timeout: float = 10.0) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        payload = query(http, task_id)
        status = payload["output"]["task_status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in FINAL:
            return payload, seen
        time.sleep(0.01)
    raise AssertionError(f"{task_id} not final after {timeout} s: {seen}")


def probe(data: bytes) -> tuple[float, int, int]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        return container.duration / av.time_base, video.codec_context.width, video.codec_context.height


def assert_error(response: httpx.Response, status: int, code: str, message: str | None = None) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"request_id", "code", "message"}, payload
    assert payload["code"] == code
    assert payload["request_id"]
    if message is not None:
        assert payload["message"] == message
    text: str = payload["message"]
    return text


# -- create, query, usage, clips ----------------------------------------------------------------------------------


def test_create_without_the_async_header_is_refused_and_creates_nothing(http: httpx.Client, ds: EmulatorServer) -> None:
    response = http.post(CREATE, json=t2v())
    assert_error(response, 403, "AccessDenied", "current user api does not support synchronous calls")
    response = http.post(CREATE, json=t2v(), headers={"X-DashScope-Async": "disable"})
    assert_error(response, 403, "AccessDenied", "current user api does not support synchronous calls")
    assert ds.stats()["jobs"]["total"] == 0


def test_text_to_video_lifecycle_usage_and_clip(http: httpx.Client) -> None:
    task_id = create(http, t2v(resolution="720P", ratio="16:9", duration=4))
    payload, seen = wait(http, task_id)
    assert seen[-1] == "SUCCEEDED"
    assert set(seen) <= {"PENDING", "RUNNING", "SUCCEEDED"}
    assert "RUNNING" in seen
    output = payload["output"]
    assert output["task_id"] == task_id
    assert output["orig_prompt"] == "a horse on a beach"
    for name in ("submit_time", "scheduled_time", "end_time"):
        assert TIME.match(output[name]), output
    assert payload["usage"] == {
        "duration": 4,
        "input_video_duration": 0,
        "output_video_duration": 4,
        "video_count": 1,
        "SR": 720,
        "ratio": "16:9",
    }
    clip = http.get(output["video_url"])
    assert clip.status_code == 200
    duration, width, height = probe(clip.content)
    assert (width, height) == (1280, 720)
    assert duration == pytest.approx(4, abs=0.1)


@pytest.mark.parametrize(
    ("resolution", "ratio", "frame"),
    [("1080P", "16:9", (1920, 1080)), ("1080P", "9:16", (1080, 1920)), ("720P", "4:3", (960, 720)),
     ("1080P", "3:4", (1080, 1440)), ("720P", "1:1", (720, 720))],
)  # fmt: skip
def test_clip_frame_follows_the_resolution_tier(
    http: httpx.Client, resolution: str, ratio: str, frame: tuple[int, int]
) -> None:
    payload, _ = wait(http, create(http, t2v(resolution=resolution, ratio=ratio, duration=3)))
    assert payload["usage"]["SR"] == min(frame)
    started = time.monotonic()
    clip = http.get(payload["output"]["video_url"])
    elapsed = time.monotonic() - started
    assert probe(clip.content)[1:] == frame
    assert elapsed < 5.0  # a real-size clip stays cheap to render (one pass of x264 ultrafast)


def test_default_resolution_is_1080p_and_default_duration_5(http: httpx.Client) -> None:
    body = {"model": "happyhorse-1.1-t2v", "input": {"prompt": "a horse"}}
    payload, _ = wait(http, create(http, body))
    usage = payload["usage"]
    assert (usage["SR"], usage["output_video_duration"], usage["ratio"]) == (1080, 5, "16:9")
    assert probe(http.get(payload["output"]["video_url"]).content)[1:] == (1920, 1080)


def test_failed_task_has_code_and_message_and_no_usage(http: httpx.Client, ds: EmulatorServer) -> None:
    ds.configure(job_failure_rate=1.0)
    payload, seen = wait(http, create(http, t2v()))
    assert seen[-1] == "FAILED"
    assert payload["output"]["code"] in {"DataInspectionFailed", "InternalError"}
    assert payload["output"]["message"]
    assert "usage" not in payload
    assert "video_url" not in payload["output"]


def test_unknown_and_expired_tasks_are_unknown(http: httpx.Client, ds: EmulatorServer) -> None:
    payload = query(http, "0385dc79-5ff8-4d82-bcb6-000000000000")
    assert payload["output"] == {"task_id": "0385dc79-5ff8-4d82-bcb6-000000000000", "task_status": "UNKNOWN"}
    assert payload["request_id"]
    ds.configure(result_ttl_seconds=0.0)
    task_id = create(http, t2v(duration=3))
    _, seen = wait(http, task_id)
    assert seen[-1] == "UNKNOWN"  # ended, then kept 0 s
    assert "SUCCEEDED" not in seen or seen.index("SUCCEEDED") < seen.index("UNKNOWN")


def test_any_key_of_the_account_queries_the_task(http: httpx.Client, ds: EmulatorServer) -> None:
    task_id = create(http, t2v())
    other = http.get(f"/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {SECOND_KEY}"})
    assert other.json()["output"]["task_id"] == task_id
    assert other.json()["output"]["task_status"] != "UNKNOWN"


# -- errors ---------------------------------------------------------------------------------------------------------


def test_keys_and_account_errors(http: httpx.Client) -> None:
    bad = {"Authorization": "Bearer not-a-key", **ASYNC}
    assert_error(http.post(CREATE, json=t2v(), headers=bad), 401, "InvalidApiKey", "Invalid API-key provided.")
    assert_error(http.get("/api/v1/tasks/x", headers=bad), 401, "InvalidApiKey")
    arrears = {"Authorization": f"Bearer {NO_CREDIT_KEY}", **ASYNC}
    assert_error(
        http.post(CREATE, json=t2v(), headers=arrears),
        400,
        "Arrearage",
        "Access denied, please make sure your account is in good standing.",
    )


def test_happyhorse_app_routes_are_not_served(http: httpx.Client) -> None:
    assert http.post("/api/generate", json={"model": "happyhorse-1.0/video", "prompt": "x"}).status_code == 404
    assert http.get("/api/status", params={"task_id": "x"}).status_code == 404


def test_the_happyhorse_dialect_does_not_serve_dashscope_routes(emulator: EmulatorServer) -> None:
    with httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}) as client:
        assert client.post(CREATE, json=t2v(), headers=ASYNC).status_code == 404
        assert client.get("/api/v1/tasks/x").status_code == 404


IMAGE = "https://cdn.example.com/frame.png"
VIDEO = "https://cdn.example.com/source.mp4"


def media(*items: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": kind, "url": url} for kind, url in items]


REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "no-model": ({"input": {"prompt": "x"}}, "BadRequest.EmptyModel", 'Required parameter "model" missing'),
    "unknown-model": ({"model": "wan2.7-t2v", "input": {"prompt": "x"}}, "InvalidParameter", "Model not exist."),
    "no-input": ({"model": "happyhorse-1.0-t2v"}, "BadRequest.EmptyInput", "Required input parameter missing"),
    "t2v-no-prompt": ({"model": "happyhorse-1.0-t2v", "input": {}}, "InvalidParameter", "input.prompt"),
    "resolution": (t2v(resolution="4K"), "InvalidParameter", "parameters.resolution"),
    "resolution-lowercase": (t2v(resolution="720p"), "InvalidParameter", "parameters.resolution"),
    "ratio": (t2v(ratio="21:9"), "InvalidParameter", "parameters.ratio"),
    "ratio-4x3": (t2v(ratio="4x3"), "InvalidParameter", "parameters.ratio"),
    "ratio-number": (t2v(ratio=1.33), "InvalidParameter", "parameters.ratio"),
    "duration-2": (t2v(duration=2), "InvalidParameter", "parameters.duration"),
    "duration-16": (t2v(duration=16), "InvalidParameter", "parameters.duration"),
    "duration-string": (t2v(duration="5"), "InvalidParameter", "parameters.duration"),
    "duration-fraction": (t2v(duration=5.5), "InvalidParameter", "parameters.duration"),
    "seed-negative": (t2v(seed=-1), "InvalidParameter", "parameters.seed"),
    "seed-too-big": (t2v(seed=2_147_483_648), "InvalidParameter", "parameters.seed"),
    "watermark": (t2v(watermark="yes"), "InvalidParameter", "parameters.watermark"),
    "t2v-with-media": (
        {"model": "happyhorse-1.0-t2v", "input": {"prompt": "x", "media": media(("first_frame", IMAGE))}},
        "InvalidParameter",
        "input.media[0].type",
    ),
    "i2v-no-frame": ({"model": "happyhorse-1.0-i2v", "input": {"prompt": "x"}}, "InvalidParameter", "first_frame"),
    "i2v-two-frames": (
        {"model": "happyhorse-1.0-i2v", "input": {"media": media(("first_frame", IMAGE), ("first_frame", IMAGE))}},
        "InvalidParameter",
        "exactly 1 first_frame",
    ),
    "media-url": (
        {"model": "happyhorse-1.0-i2v", "input": {"media": media(("first_frame", "ftp://x/y.png"))}},
        "InvalidParameter",
        "input.media[0].url",
    ),
    "r2v-none": ({"model": "happyhorse-1.0-r2v", "input": {"prompt": "character1"}}, "InvalidParameter", "1 to 9"),
    "r2v-ten": (
        {"model": "happyhorse-1.0-r2v", "input": {"prompt": "c1", "media": media(*[("reference_image", IMAGE)] * 10)}},
        "InvalidParameter",
        "1 to 9",
    ),
    "edit-no-video": (
        {"model": "happyhorse-1.0-video-edit", "input": {"prompt": "x", "media": media(("reference_image", IMAGE))}},
        "InvalidParameter",
        "exactly 1 video",
    ),
    "edit-six-references": (
        {
            "model": "happyhorse-1.0-video-edit",
            "input": {"prompt": "x", "media": media(("video", VIDEO), *[("reference_image", IMAGE)] * 6)},
        },
        "InvalidParameter",
        "at most 5",
    ),
    "edit-audio-setting": (
        {
            "model": "happyhorse-1.0-video-edit",
            "input": {"prompt": "x", "media": media(("video", VIDEO))},
            "parameters": {"audio_setting": "mute"},
        },
        "InvalidParameter",
        "parameters.audio_setting",
    ),
}


@pytest.mark.parametrize(("body", "code", "needle"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(http: httpx.Client, ds: EmulatorServer, body: dict[str, Any], code: str, needle: str) -> None:
    message = assert_error(http.post(CREATE, json=body, headers=ASYNC), 400, code)
    assert needle in message
    assert ds.stats()["jobs"]["total"] == 0


def test_injected_gateway_errors_take_the_dialect_shape(http: httpx.Client, ds: EmulatorServer) -> None:
    ds.configure(faults={"rate_limit_storm_rate": 1.0, "faults_on": ["status"]})
    response = http.get("/api/v1/tasks/x")
    assert_error(response, 429, "Throttling.RateQuota", THROTTLED)
    assert "retry-after" in response.headers
    ds.configure(faults={"rate_limit_storm_rate": 0.0, "server_error_rate": 1.0})
    for _ in range(8):
        response = http.get("/api/v1/tasks/x")
        assert response.status_code in (500, 502, 503, 504)
        if response.headers["content-type"] == "application/json":
            assert_error(response, response.status_code, "InternalError")


# -- query limit and cancel ---------------------------------------------------------------------------------------


def test_account_query_limit_is_20_per_second_by_default(http: httpx.Client, ds: EmulatorServer) -> None:
    ds.restore()  # the configuration it started with: the default limit
    assert ds.config.query_limit_per_second == 20.0
    task_id = create(http, t2v())
    second = {"Authorization": f"Bearer {SECOND_KEY}"}
    started = time.monotonic()
    answers = [http.get(f"/api/v1/tasks/{task_id}", headers=second if i % 2 else {}) for i in range(40)]
    elapsed = time.monotonic() - started
    passed = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code == 429]
    assert len(passed) + len(limited) == 40
    # One bucket for the account (both keys): 20 at once, then 20 more per second.
    assert 20 <= len(passed) <= 20 + 20 * elapsed + 1
    assert limited
    assert_error(limited[0], 429, "Throttling.RateQuota", THROTTLED)


def test_query_limit_is_configurable(http: httpx.Client, ds: EmulatorServer) -> None:
    task_id = create(http, t2v())
    ds.configure(query_limit_per_second=None)
    assert all(http.get(f"/api/v1/tasks/{task_id}").status_code == 200 for _ in range(60))
    ds.configure(query_limit_per_second=3.0)
    statuses = [http.get(f"/api/v1/tasks/{task_id}").status_code for _ in range(6)]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]


def test_cancel_a_pending_task_only(http: httpx.Client, ds: EmulatorServer) -> None:
    ds.configure(max_concurrent_per_key=1, base_seconds=300.0)  # the first renders 3 s, the second waits for it
    running = create(http, t2v())
    queued = create(http, t2v(duration=3))
    assert query(http, running)["output"]["task_status"] == "RUNNING"
    assert query(http, queued)["output"]["task_status"] == "PENDING"

    assert_error(http.post(f"/api/v1/tasks/{running}/cancel"), 400, "UnsupportedOperation", CANCEL_REFUSED)
    response = http.post(f"/api/v1/tasks/{queued}/cancel")
    assert response.status_code == 200
    assert set(response.json()) == {"request_id"}

    output = query(http, queued)["output"]
    assert output["task_status"] == "CANCELED"
    assert "video_url" not in output
    assert_error(http.post(f"/api/v1/tasks/{queued}/cancel"), 400, "UnsupportedOperation", CANCEL_REFUSED)
    assert_error(http.post("/api/v1/tasks/no-such-task/cancel"), 400, "UnsupportedOperation", CANCEL_REFUSED)
    assert http.get(f"/files/{queued}.mp4").status_code == 404
    assert ds.stats()["jobs"]["by_state"]["FAILED"] == 1  # the cancelled one
    assert http.get(f"/api/v1/tasks/{queued}/cancel").status_code == 405


def test_cancel_is_kept_in_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    store = JobStore(str(path))
    job = Job("t", "k", created=0.0, started=10.0, finished=20.0, mode="std", duration=5.0, sound=True,
              width=1280, height=720, fingerprint="f", dialect_data={"model": "happyhorse-1.0-t2v"})  # fmt: skip
    store.add(job)
    store.cancel(job, 5.0)
    store.close()
    replayed = JobStore(str(path)).get("t")
    assert replayed is not None
    assert replayed.canceled == 5.0
    assert replayed.dialect_data == {"model": "happyhorse-1.0-t2v"}


# -- modes ----------------------------------------------------------------------------------------------------------


def test_first_frame_image_to_video_follows_the_image(http: httpx.Client, ds: EmulatorServer) -> None:
    image = f"{ds.base_url}/_emulator/images/600x400.png"
    body = {"model": "happyhorse-1.0-i2v", "input": {"media": media(("first_frame", image))},
            "parameters": {"resolution": "720P", "ratio": "9:16"}}  # fmt: skip
    payload, _ = wait(http, create(http, body))
    assert payload["usage"]["ratio"] == "3:2"  # the image's, not the ignored ratio
    assert probe(http.get(payload["output"]["video_url"]).content)[1:] == (1080, 720)


def test_first_frame_too_small_is_refused(http: httpx.Client, ds: EmulatorServer) -> None:
    image = f"{ds.base_url}/_emulator/images/299x400.png"
    body = {"model": "happyhorse-1.0-i2v", "input": {"media": media(("first_frame", image))}}
    assert "at least 300 px" in assert_error(http.post(CREATE, json=body, headers=ASYNC), 400, "InvalidParameter")
    wide = f"{ds.base_url}/_emulator/images/1300x500.png"
    body = {"model": "happyhorse-1.0-i2v", "input": {"media": media(("first_frame", wide))}}
    assert "1:2.5 and 2.5:1" in assert_error(http.post(CREATE, json=body, headers=ASYNC), 400, "InvalidParameter")


def test_reference_to_video_takes_1_to_9_images(http: httpx.Client, ds: EmulatorServer) -> None:
    image = f"{ds.base_url}/_emulator/images/512x512.png"
    body: dict[str, Any] = {
        "model": "happyhorse-1.0-r2v",
        "input": {"prompt": "character1 meets character2", "media": media(*[("reference_image", image)] * 9)},
        "parameters": {"ratio": "1:1", "resolution": "720P"},
    }
    payload, _ = wait(http, create(http, body))
    assert payload["usage"]["ratio"] == "1:1"
    assert probe(http.get(payload["output"]["video_url"]).content)[1:] == (720, 720)
    small = f"{ds.base_url}/_emulator/images/399x800.png"
    body["input"]["media"] = media(("reference_image", small))
    assert "at least 400 px" in assert_error(http.post(CREATE, json=body, headers=ASYNC), 400, "InvalidParameter")


@pytest.mark.parametrize(
    ("resolution", "ratio", "frame"),
    [("720P", "4:3", (960, 720)), ("1080P", "3:4", (1080, 1440)), ("720P", "3:4", (720, 960))],
)
def test_reference_to_video_takes_4_3_and_3_4_at_the_tiers_short_side(
    http: httpx.Client, ds: EmulatorServer, resolution: str, ratio: str, frame: tuple[int, int]
) -> None:
    image = f"{ds.base_url}/_emulator/images/512x512.png"
    body = {
        "model": "happyhorse-1.0-r2v",
        "input": {"prompt": "character1", "media": media(("reference_image", image))},
        "parameters": {"ratio": ratio, "resolution": resolution, "duration": 3},
    }
    payload, _ = wait(http, create(http, body))
    assert (payload["usage"]["ratio"], payload["usage"]["SR"]) == (ratio, min(frame))
    assert probe(http.get(payload["output"]["video_url"]).content)[1:] == frame


@pytest.mark.parametrize(
    "prompt",
    ["p" * 5000, "马" * 2500, "马" * 2499 + "pp", "p" * 5001, "马" * 2501],
    ids=["5000-latin", "2500-cjk", "mixed-5000-units", "5001-latin", "2501-cjk"],
)
def test_prompts_of_5000_units_are_taken_and_longer_ones_too_as_the_service_truncates(
    http: httpx.Client, prompt: str
) -> None:
    """The service takes 5000 characters, a CJK one counting two, and cuts a longer prompt rather than refusing it
    (DASHSCOPE_API.md): so the emulator takes both, and the provider refuses the longer one before sending."""
    task_id = create(http, {"model": "happyhorse-1.0-t2v", "input": {"prompt": prompt}, "parameters": {"duration": 3}})
    payload, _ = wait(http, task_id)
    assert payload["output"]["orig_prompt"] == prompt


def edit(source: str, **parameters: Any) -> dict[str, Any]:
    return {
        "model": "happyhorse-1.0-video-edit",
        "input": {"prompt": "make it snow", "media": media(("video", source))},
        "parameters": parameters,
    }


def test_edit_lasts_as_long_as_its_source(http: httpx.Client) -> None:
    source, _ = wait(http, create(http, t2v(duration=7, ratio="9:16", resolution="720P")))
    payload, _ = wait(http, create(http, edit(source["output"]["video_url"], resolution="1080P", duration=3)))
    assert payload["usage"] == {
        "duration": 14,  # input and output seconds are billed
        "input_video_duration": 7,
        "output_video_duration": 7,
        "video_count": 1,
        "SR": 1080,
        "ratio": "9:16",
    }
    duration, width, height = probe(http.get(payload["output"]["video_url"]).content)
    assert duration == pytest.approx(7, abs=0.1)
    assert (width, height) == (1080, 1920)


@pytest.fixture(scope="module")
def video_site() -> Iterator[str]:
    """A loopback site serving MP4s of 2 s and 20 s (``/2.mp4``, ``/20.mp4``) and a non-video (``/text.mp4``)."""
    files = {"/2.mp4": render_mp4(2, 64, 36, False), "/20.mp4": render_mp4(20, 64, 36, False), "/text.mp4": b"hi"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_edit_of_a_long_source_is_capped_at_15_seconds(http: httpx.Client, video_site: str) -> None:
    payload, _ = wait(http, create(http, edit(f"{video_site}/20.mp4", resolution="720P")))
    usage = payload["usage"]
    assert (usage["input_video_duration"], usage["output_video_duration"], usage["duration"]) == (15, 15, 30)
    assert usage["ratio"] == "16:9"
    duration, width, height = probe(http.get(payload["output"]["video_url"]).content)
    assert duration == pytest.approx(15, abs=0.1)
    assert (width, height) == (1280, 720)


def test_edit_of_a_source_under_3_seconds_is_refused(http: httpx.Client, video_site: str) -> None:
    message = assert_error(http.post(CREATE, json=edit(f"{video_site}/2.mp4"), headers=ASYNC), 400, "InvalidParameter")
    assert "3-60 s" in message


@pytest.mark.parametrize("path", ["https://cdn.example.com/source.mp4", "/text.mp4", "/missing.mp4"])
def test_edit_of_an_unreadable_source_fails_and_says_why(http: httpx.Client, video_site: str, path: str) -> None:
    url = path if path.startswith("https") else video_site + path
    payload, seen = wait(http, create(http, edit(url)))
    assert seen[-1] == "FAILED"
    assert payload["output"]["code"] == "InvalidParameter"
    assert "could not read the source video" in payload["output"]["message"]


# -- configuration --------------------------------------------------------------------------------------------------


def test_cli_flags_and_defaults() -> None:
    assert EmulatorConfig().dialect == "happyhorse"
    assert EmulatorConfig().query_limit_per_second == 20.0
    config = config_from_args(build_parser().parse_args(["--dialect", "dashscope", "--query-limit", "5"]))
    assert (config.dialect, config.query_limit_per_second) == ("dashscope", 5.0)
    assert config_from_args(build_parser().parse_args([])).dialect == "happyhorse"


def test_dialect_cannot_change_at_runtime(ds: EmulatorServer) -> None:
    with pytest.raises(ValueError, match="dialect cannot be changed"):
        ds.configure(dialect="happyhorse")


def test_the_cli_flag_serves_the_dialect_and_a_cancel_survives_a_restart(tmp_path: Path) -> None:
    """``happyhorse-emulator --dialect dashscope`` in a child process: a queued task cancelled, the process killed
    and restarted on its state file, the task still CANCELED."""
    from happyhorse_emulator import EmulatorProcess

    config = EmulatorConfig(speed=1.0, max_concurrent_per_key=1)  # renders of 35 s and more: the second one queues
    args = ["--dialect", "dashscope", "--query-limit", "50"]
    with EmulatorProcess(config, args=args, state_file=tmp_path / "jobs.jsonl") as process:
        headers = {"Authorization": f"Bearer {process.api_key}"}
        with httpx.Client(base_url=process.base_url, headers=headers, timeout=10.0, trust_env=False) as client:
            legacy = client.post("/api/generate", json={"model": "happyhorse-1.0/video", "prompt": "x"})
            assert legacy.status_code == 404
            create(client, t2v())
            queued = create(client, t2v())
            assert client.post(f"/api/v1/tasks/{queued}/cancel").status_code == 200
        process.kill()
        process.start()
        with httpx.Client(base_url=process.base_url, headers=headers, timeout=10.0, trust_env=False) as client:
            assert query(client, queued)["output"]["task_status"] == "CANCELED"


def test_happyhorse_jobs_keep_their_state_file_lines(tmp_path: Path) -> None:
    job = Job("t", "k", created=0.0, started=0.0, finished=1.0, mode="std", duration=5.0, sound=True,
              width=160, height=90, fingerprint="f")  # fmt: skip
    assert "dialect_data" not in job.to_record()
    assert "canceled" not in job.to_record()

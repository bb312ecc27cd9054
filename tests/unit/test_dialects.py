"""
Dialects (issue 23, items 1 and 2): the connection picks happyhorse.app's or DashScope's spelling; each dialect's
bodies, answers and error codes, and its refusals before anything is sent, against scripted transports.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.core.dialects import DASHSCOPE, HAPPYHORSE, default_dialect, prompt_units
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.exceptions import (
    AccountError,
    AuthenticationError,
    ConfigurationError,
    HappyHorseError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    SubmissionOutcomeUnknownError,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, query_buckets
from airflow_provider_happyhorse.models import JobState, VideoRequest
from support.clock import FakeClock
from support.dashscope import CREATE_PATH, DS_HOST, TASK_ID, VIDEO_URL, FakeDashScope, ds_error, ds_task
from support.service import API_KEY, HOST, ConnectionSetter, FakeService, resolve

IMAGE = "https://img.example/a.png"
VIDEO = "https://cdn.example/yesterday.mp4"


def hook_on(service: FakeDashScope | FakeService, clock: FakeClock | None = None) -> HappyHorseHook:
    """A hook on ``service`` with ``clock``'s time, its query bucket too (the process's buckets forgotten)."""
    clock = clock or FakeClock()
    query_buckets.clear()
    transport = service.transport()
    return HappyHorseHook(
        transport=transport,
        async_transport=transport,
        resolve=resolve,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        rng=lambda: 0.5,
        clock=clock,
        monotonic=clock.monotonic,
    )


# -- choosing the dialect -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://dashscope.aliyuncs.com", "dashscope"),
        ("https://dashscope-intl.aliyuncs.com/prefix", "dashscope"),
        ("https://DashScope-intl.AliyunCS.com", "dashscope"),
        ("https://happyhorse.app", "happyhorse"),
        ("https://dashscope.aliyuncs.com.evil.example", "happyhorse"),
        ("http://127.0.0.1:8080", "happyhorse"),
    ],
)
def test_the_base_urls_host_gives_the_default_dialect(base_url: str, expected: str) -> None:
    assert default_dialect(base_url) == expected


def test_the_connections_extra_overrides_the_host(connection: ConnectionSetter) -> None:
    connection(host="http://127.0.0.1:9", extra={"dialect": "dashscope"})
    assert HappyHorseHook().settings.dialect_name == "dashscope"
    connection(host=DS_HOST, extra={"dialect": "happyhorse"})
    assert HappyHorseHook().settings.dialect_name == "happyhorse"
    connection(host=DS_HOST)
    assert HappyHorseHook().settings.dialect is DASHSCOPE


def test_an_unknown_dialect_is_refused_with_the_way_out(connection: ConnectionSetter) -> None:
    connection(extra={"dialect": "kling"})
    with pytest.raises(ConfigurationError, match=r"dialect 'kling' \(it is one of happyhorse, dashscope\)"):
        _ = HappyHorseHook().settings


# -- the request model's new fields ----------------------------------------------------------------------------


def test_existing_requests_keep_their_body_and_fingerprint() -> None:
    request = VideoRequest(prompt="a horse", image_urls=[IMAGE, IMAGE], mode="pro", duration=10)
    assert HAPPYHORSE.body(request) == request.to_body()
    assert "task" not in request.to_body()
    assert "seed" not in request.to_body()
    # The same request with task spelled out is the same body on the wire.
    spelled = VideoRequest(
        prompt="a horse", image_urls=[IMAGE, IMAGE], mode="pro", duration=10, task="first_last_frame"
    )
    assert HAPPYHORSE.body(spelled) == request.to_body()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"task": "reference", "image_urls": []}, "image_urls: task 'reference' takes 1 to 9 images (got 0)"),
        ({"task": "reference", "image_urls": [IMAGE] * 10}, "takes 1 to 9 images (got 10)"),
        ({"task": "first_frame", "image_urls": [IMAGE] * 2}, "takes exactly 1 images (got 2)"),
        ({"task": "text", "image_urls": [IMAGE]}, "takes exactly 0 images (got 1)"),
        ({"task": "edit"}, "source_video: required for task 'edit'"),
        ({"task": "edit", "source_video": VIDEO, "duration": 8}, "duration: task 'edit' lasts as long as"),
        ({"task": "edit", "source_video": VIDEO, "image_urls": [IMAGE] * 6}, "takes 0 to 5 images (got 6)"),
        ({"source_video": VIDEO, "task": "text"}, "source_video: only task 'edit' takes a source video"),
        ({"audio_setting": "origin"}, "audio_setting: only task 'edit' takes it"),
        ({"seed": -1}, "seed:"),
        ({"seed": 2_147_483_648}, "seed:"),
        ({"resolution": "4K"}, "resolution:"),
        ({"source_video": "ftp://x/y.mp4"}, "source_video: must be an http(s) URL"),
        ({"extra_fields": {"seed": 1}}, "extra_fields: seed must be set as the request's own field"),
    ],
)
def test_the_task_rules_are_checked_before_any_dialect(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        VideoRequest.parse({"prompt": "a horse", **fields})
    assert words in str(raised.value)


def test_an_edit_round_trips_through_its_body() -> None:
    edit = VideoRequest(prompt="make it night", task="edit", source_video=VIDEO, audio_setting="origin")
    assert "duration" not in edit.to_body()
    assert VideoRequest.model_validate(edit.to_body()) == edit


# -- happyhorse.app refuses what only DashScope offers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"task": "reference", "image_urls": [IMAGE]}, "task: 'reference' (reference-to-video)"),
        ({"task": "edit", "source_video": VIDEO}, "task: 'edit' (video edit)"),
        ({"resolution": "1080P"}, "resolution: resolution '1080P'"),
        ({"seed": 42}, "seed: seed 42"),
        ({"watermark": False}, "watermark: watermark False"),
    ],
)
def test_happyhorse_app_refuses_before_paying(connection: ConnectionSetter, fields: dict[str, Any], field: str) -> None:
    connection(host=HOST)
    service = FakeService()
    with pytest.raises(InvalidRequestError) as raised:
        hook_on(service).submit_job(VideoRequest.parse({"prompt": "a horse", **fields}))
    message = str(raised.value)
    assert field in message
    assert "not offered by happyhorse.app (the connection's dialect 'happyhorse')" in message
    assert "Alibaba Cloud Model Studio (dialect 'dashscope'" in message
    assert service.requests == []


def test_happyhorse_app_sends_extra_fields_at_the_top_and_says_so(
    connection: ConnectionSetter, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=HOST)
    service = FakeService()
    caplog.set_level(logging.WARNING)
    hook_on(service).submit_job(VideoRequest(prompt="a horse", extra_fields={"callback_url": "https://cb.example/x"}))
    body = httpx.Response(200, content=service.requests[0].content).json()
    assert body["callback_url"] == "https://cb.example/x"
    assert "extra_fields" not in body
    logged = caplog.text + capsys.readouterr().out  # Airflow's structlog writes to stdout where it is set up
    assert "does not check, as given in extra_fields" in logged
    assert "callback_url='https://cb.example/x'" in logged


# -- DashScope: bodies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"prompt": "a horse", "resolution": "720P", "seed": 7, "watermark": False, "aspect_ratio": "9:16"},
            {
                "model": "happyhorse-1.0-t2v",
                "input": {"prompt": "a horse"},
                "parameters": {"resolution": "720P", "ratio": "9:16", "duration": 5, "watermark": False, "seed": 7},
            },
        ),
        (
            {"prompt": "it gallops", "image_urls": [IMAGE], "duration": 8},
            {
                "model": "happyhorse-1.0-i2v",
                "input": {"prompt": "it gallops", "media": [{"type": "first_frame", "url": IMAGE}]},
                "parameters": {"duration": 8},
            },
        ),
        (
            {"prompt": "character1 rides", "task": "reference", "image_urls": [IMAGE, VIDEO + ".png"]},
            {
                "model": "happyhorse-1.0-r2v",
                "input": {
                    "prompt": "character1 rides",
                    "media": [
                        {"type": "reference_image", "url": IMAGE},
                        {"type": "reference_image", "url": VIDEO + ".png"},
                    ],
                },
                "parameters": {"ratio": "16:9", "duration": 5},
            },
        ),
        (
            {"prompt": "night", "source_video": VIDEO, "audio_setting": "origin", "extra_fields": {"cb": 1}},
            {
                "model": "happyhorse-1.0-video-edit",
                "input": {"prompt": "night", "media": [{"type": "video", "url": VIDEO}]},
                "parameters": {"audio_setting": "origin", "cb": 1},
            },
        ),
    ],
)
def test_dashscope_bodies(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    assert DASHSCOPE.body(VideoRequest.parse(fields)) == expected


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"image_urls": [IMAGE, IMAGE]}, "image_urls: a first and a last frame (2 images) is not offered by Alibaba"),
        ({"multi_shots": True, "multi_prompt": [{"prompt": "x"}]}, "multi_shots: a multi-shot video"),
        ({"mode": "pro"}, "mode: mode 'pro' is not offered"),
        ({"sound": False}, "sound: sound=False"),
        ({"cfg_scale": 0.9}, "cfg_scale: cfg_scale 0.9"),
        ({"duration": 5.5}, "duration: Alibaba Cloud Model Studio (DashScope) takes whole seconds (3-15), got 5.5"),
        ({"image_urls": [IMAGE], "aspect_ratio": "1:1"}, "aspect_ratio: task 'first_frame' on Alibaba"),
        ({"source_video": VIDEO, "aspect_ratio": "9:16"}, "follows its source video, so it takes no aspect_ratio"),
    ],
)
def test_dashscope_refuses_before_paying(connection: ConnectionSetter, fields: dict[str, Any], words: str) -> None:
    connection(host=DS_HOST)
    service = FakeDashScope()
    with pytest.raises(InvalidRequestError) as raised:
        hook_on(service).submit_job(VideoRequest.parse({"prompt": "a horse", **fields}))
    assert words in str(raised.value)
    assert "(the connection's dialect 'dashscope')" in str(raised.value) or "DashScope" in str(raised.value)
    assert service.requests == []


def test_a_prompt_is_measured_by_script() -> None:
    assert prompt_units("a horse") == 7
    assert prompt_units("马在海滩上") == 10
    assert prompt_units("\uff48") == 2  # a full-width Latin letter is as wide as a CJK one
    assert prompt_units("馬と海") == 6  # kana and kanji too


# -- each dialect's own prompt length and ratios (issue 23, item 2), at the boundaries -----------------------------
# The request model takes the union (5000 characters, five ratios: test_models.py); each dialect holds a request to
# its own rule before anything is sent. Each case goes through the hook to a scripted service: a refused one sends
# nothing, an accepted one is sent as given.

CJK = "马"
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4")
# The fields that make each task (first_last_frame: happyhorse.app only; reference and edit: DashScope only).
TASK_FIELDS: dict[str, dict[str, Any]] = {
    "text": {},
    "first_frame": {"image_urls": [IMAGE]},
    "first_last_frame": {"image_urls": [IMAGE, IMAGE]},
    "reference": {"task": "reference", "image_urls": [IMAGE]},
    "edit": {"task": "edit", "source_video": VIDEO},
}


def sent_to_happyhorse(connection: ConnectionSetter, fields: dict[str, Any]) -> tuple[FakeService, dict[str, Any]]:
    """The request ``fields`` make, submitted on a happyhorse.app connection: the service and the body it got."""
    connection(host=HOST)
    service = FakeService()
    hook_on(service).submit_job(VideoRequest.parse(fields))
    assert service.posts == 1
    return service, httpx.Response(200, content=service.requests[0].content).json()


def sent_to_dashscope(connection: ConnectionSetter, fields: dict[str, Any]) -> dict[str, Any]:
    """The request ``fields`` make, submitted on a DashScope connection: the create body the service got."""
    connection(host=DS_HOST)
    service = FakeDashScope()
    hook_on(service).submit_job(VideoRequest.parse(fields))
    assert len(service.creates) == 1
    body: dict[str, Any] = httpx.Response(200, content=service.creates[0].content).json()
    return body


def refused_by(connection: ConnectionSetter, host: str, fields: dict[str, Any]) -> str:
    """The refusal of the request ``fields`` make on a connection to ``host``; nothing reaches the service."""
    connection(host=host)
    service: FakeDashScope | FakeService = FakeDashScope() if host == DS_HOST else FakeService()
    with pytest.raises(InvalidRequestError) as raised:
        hook_on(service).submit_job(VideoRequest.parse(fields))
    assert service.requests == []
    return str(raised.value)


@pytest.mark.parametrize("prompt", ["p" * 2500, CJK * 2500], ids=["2500-latin", "2500-cjk"])
def test_happyhorse_app_takes_2500_characters_of_any_script(connection: ConnectionSetter, prompt: str) -> None:
    _, body = sent_to_happyhorse(connection, {"prompt": prompt})
    assert body["prompt"] == prompt


@pytest.mark.parametrize(("prompt", "got"), [("p" * 2501, "2,501"), (CJK * 2501, "2,501"), ("p" * 5000, "5,000")])
def test_happyhorse_app_refuses_a_prompt_over_2500_characters(
    connection: ConnectionSetter, prompt: str, got: str
) -> None:
    message = refused_by(connection, HOST, {"prompt": prompt})
    assert f"prompt: happyhorse.app takes at most 2500 characters (got {got} characters): shorten it" in message
    assert "use a connection of dialect 'dashscope' (Alibaba Cloud Model Studio takes up to 5000" in message
    assert prompt[:50] not in message  # a long prompt is counted, not echoed


@pytest.mark.parametrize("task", ["text", "first_frame", "first_last_frame"])
@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1"])
def test_happyhorse_app_takes_its_three_ratios_for_every_task(
    connection: ConnectionSetter, task: str, ratio: str
) -> None:
    _, body = sent_to_happyhorse(connection, {"prompt": "a horse", "aspect_ratio": ratio, **TASK_FIELDS[task]})
    assert body["aspect_ratio"] == ratio


@pytest.mark.parametrize("task", ["text", "first_frame", "first_last_frame"])
@pytest.mark.parametrize("ratio", ["4:3", "3:4"])
def test_happyhorse_app_refuses_dashscopes_ratios(connection: ConnectionSetter, task: str, ratio: str) -> None:
    message = refused_by(connection, HOST, {"prompt": "a horse", "aspect_ratio": ratio, **TASK_FIELDS[task]})
    assert f"aspect_ratio: happyhorse.app takes '16:9', '9:16' or '1:1' (got '{ratio}')" in message
    assert (
        f"{ratio} is offered by Alibaba Cloud Model Studio for text and reference tasks (dialect 'dashscope'" in message
    )
    assert "use a connection of that dialect, or choose one of the three" in message


@pytest.mark.parametrize(
    "prompt",
    ["p" * 5000, CJK * 2500, CJK * 2499 + "pp", "p" * 2501],
    ids=["5000-latin", "2500-cjk", "mixed-5000-units", "2501-latin"],
)
def test_dashscope_takes_5000_units(connection: ConnectionSetter, prompt: str) -> None:
    assert sent_to_dashscope(connection, {"prompt": prompt})["input"]["prompt"] == prompt


@pytest.mark.parametrize(
    ("prompt", "units", "chars"),
    [(CJK * 2501, "5,002", "2,501"), (CJK * 2500 + "p", "5,001", "2,501"), ("p" + CJK * 2500, "5,001", "2,501")],
    ids=["2501-cjk", "cjk-then-latin-5001-units", "latin-then-cjk-5001-units"],
)
def test_dashscope_refuses_a_prompt_over_5000_units(
    connection: ConnectionSetter, prompt: str, units: str, chars: str
) -> None:
    message = refused_by(connection, DS_HOST, {"prompt": prompt})
    assert (
        "prompt: Alibaba Cloud Model Studio (DashScope) takes at most 5000 characters, a CJK one counting two "
        f"(at most 2500 CJK); this one counts {units} (got {chars} characters; the service would cut it): shorten it"
    ) in message


def test_5001_latin_characters_are_refused_by_the_model_on_either_dialect(connection: ConnectionSetter) -> None:
    # 5000 is the most any dialect takes, so the request model refuses more, whichever the connection.
    for host in (HOST, DS_HOST):
        message = refused_by(connection, host, {"prompt": "p" * 5001})
        assert (
            message
            == "Invalid HappyHorse request: prompt: String should have at most 5000 characters (got 5,001 characters)"
        )


@pytest.mark.parametrize("task", ["text", "reference"])
@pytest.mark.parametrize("ratio", RATIOS)
def test_dashscope_takes_all_five_ratios_for_text_and_reference(
    connection: ConnectionSetter, task: str, ratio: str
) -> None:
    body = sent_to_dashscope(connection, {"prompt": "a horse", "aspect_ratio": ratio, **TASK_FIELDS[task]})
    assert body["parameters"]["ratio"] == ratio


@pytest.mark.parametrize(("task", "follows"), [("first_frame", "its first frame"), ("edit", "its source video")])
@pytest.mark.parametrize("ratio", ["9:16", "1:1", "4:3", "3:4"])
def test_dashscope_refuses_a_ratio_where_the_clip_follows_its_media(
    connection: ConnectionSetter, task: str, follows: str, ratio: str
) -> None:
    message = refused_by(connection, DS_HOST, {"prompt": "a horse", "aspect_ratio": ratio, **TASK_FIELDS[task]})
    assert (
        f"aspect_ratio: task '{task}' on Alibaba Cloud Model Studio (DashScope) follows {follows}, so it takes no "
        f"aspect_ratio (got '{ratio}'); leave it out"
    ) in message


@pytest.mark.parametrize("task", ["first_frame", "edit"])
def test_dashscope_sends_no_ratio_where_the_clip_follows_its_media(connection: ConnectionSetter, task: str) -> None:
    assert "ratio" not in sent_to_dashscope(connection, {"prompt": "a horse", **TASK_FIELDS[task]})["parameters"]


# The other documented DashScope limits (DASHSCOPE_API.md), at their boundaries: what is sent, and what is refused.
DASHSCOPE_BOUNDARIES_TAKEN: list[tuple[dict[str, Any], Any]] = [
    ({"task": "reference", "image_urls": [IMAGE] * 9}, lambda b: len(b["input"]["media"]) == 9),
    ({"task": "edit", "source_video": VIDEO, "image_urls": [IMAGE] * 5}, lambda b: len(b["input"]["media"]) == 6),
    ({"image_urls": [IMAGE]}, lambda b: b["input"]["media"] == [{"type": "first_frame", "url": IMAGE}]),
    ({"duration": 3}, lambda b: b["parameters"]["duration"] == 3),
    ({"duration": 15.0}, lambda b: b["parameters"]["duration"] == 15 and type(b["parameters"]["duration"]) is int),
    ({"seed": 0}, lambda b: b["parameters"]["seed"] == 0),
    ({"seed": 2_147_483_647}, lambda b: b["parameters"]["seed"] == 2_147_483_647),
]


@pytest.mark.parametrize(("fields", "check"), DASHSCOPE_BOUNDARIES_TAKEN, ids=lambda v: str(v)[:40])
def test_dashscope_limits_take_their_boundaries(
    connection: ConnectionSetter, fields: dict[str, Any], check: Any
) -> None:
    assert check(sent_to_dashscope(connection, {"prompt": "character1 rides", **fields}))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"task": "reference", "image_urls": [IMAGE] * 10},
            "image_urls: task 'reference' takes 1 to 9 images (got 10)",
        ),
        ({"task": "reference", "image_urls": []}, "image_urls: task 'reference' takes 1 to 9 images (got 0)"),
        ({"task": "edit", "source_video": VIDEO, "image_urls": [IMAGE] * 6}, "task 'edit' takes 0 to 5 images (got 6)"),
        ({"task": "edit"}, "source_video: required for task 'edit'"),
        ({"task": "first_frame", "image_urls": [IMAGE, IMAGE]}, "task 'first_frame' takes exactly 1 images (got 2)"),
        ({"task": "first_frame"}, "task 'first_frame' takes exactly 1 images (got 0)"),
        ({"duration": 2}, "duration: Input should be greater than or equal to 3"),
        ({"duration": 16}, "duration: Input should be less than or equal to 15"),
        ({"duration": 14.5}, "duration: Alibaba Cloud Model Studio (DashScope) takes whole seconds (3-15), got 14.5"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"seed": 2_147_483_648}, "seed: Input should be less than or equal to 2147483647"),
        ({"seed": 4.0}, "seed: Input should be a valid integer"),
    ],
)
def test_dashscope_limits_refuse_past_their_boundaries(
    connection: ConnectionSetter, fields: dict[str, Any], words: str
) -> None:
    connection(host=DS_HOST)
    service = FakeDashScope()
    with pytest.raises(InvalidRequestError) as raised:
        hook_on(service).submit_job(VideoRequest.parse({"prompt": "a horse", **fields}))
    assert words in str(raised.value)
    assert service.requests == []


# -- DashScope: through the hook ----------------------------------------------------------------------------------


def test_submit_wait_and_result_on_dashscope(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = FakeDashScope(statuses=["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"])
    clock = FakeClock()
    hook = hook_on(service, clock)
    job = hook.submit_job(VideoRequest(prompt="a horse", resolution="720P"))
    assert (job.job_id, job.status, job.state, job.is_queued) == (TASK_ID, "PENDING", JobState.PENDING, True)
    create = service.creates[0]
    assert str(create.url) == DS_HOST + CREATE_PATH
    assert create.headers["x-dashscope-async"] == "enable"
    assert create.headers["authorization"] == f"Bearer {API_KEY}"
    event = hook.wait_for_job(
        WaitPlan(
            job_id=job.job_id,
            started_at=clock.now,
            deadline=clock.now + timedelta(minutes=10),
            schedule=PollSchedule(first_poll_after=1, min_interval=1, max_interval=2),
        )
    )
    assert (event.status, event.video_url) == ("success", VIDEO_URL)
    polls = [request for request in service.requests if request.method == "GET"]
    assert [request.url.path for request in polls] == [f"/api/v1/tasks/{TASK_ID}"] * 4


@pytest.mark.parametrize(
    ("status", "output", "words"),
    [
        ("FAILED", {"code": "DataInspectionFailed", "message": "inappropriate"}, "DataInspectionFailed: inappropriate"),
        ("CANCELED", {}, "was cancelled (CANCELED) before it rendered: nothing was billed"),
        ("UNKNOWN", {}, "(UNKNOWN): it expired (tasks and their video_url are kept 24 hours)"),
    ],
)
def test_dashscope_final_states(status: str, output: dict[str, str], words: str) -> None:
    job = DASHSCOPE.parse_status(httpx.Response(200, json=ds_task(status, **output)))
    assert job.state is JobState.FAILED
    assert job.error_message is not None
    assert words in job.error_message


def test_an_unlisted_dashscope_status_is_still_running() -> None:
    assert DASHSCOPE.parse_status(httpx.Response(200, json=ds_task("SUSPENDED"))).state is JobState.PENDING


@pytest.mark.parametrize(
    ("status", "code", "error", "permanent_submit"),
    [
        (401, "InvalidApiKey", AuthenticationError, True),
        (400, "Arrearage", AccountError, True),
        (403, "AccessDenied", AccountError, True),
        (400, "InvalidParameter", InvalidRequestError, True),
        (400, "InvalidParameter.DataInspection", InvalidRequestError, True),
        (400, "DataInspectionFailed", InvalidRequestError, True),
        (429, "Throttling.RateQuota", RateLimitError, False),
        (500, "InternalError", ServerError, False),
    ],
)
def test_dashscope_error_codes(status: int, code: str, error: type[HappyHorseError], permanent_submit: bool) -> None:
    answer = httpx.Response(status, json={"request_id": "r-9", "code": code, "message": "the service's words"})
    mapped = DASHSCOPE.error_of(status, answer.json(), answer)
    assert type(mapped) is error
    assert (mapped.error_code, mapped.request_id, mapped.message) == (code, "r-9", "the service's words")


def test_a_dashscope_throttle_is_retried_and_a_server_error_on_submit_is_outcome_unknown(
    connection: ConnectionSetter,
) -> None:
    connection(host=DS_HOST)
    service = FakeDashScope()
    service.faults.append(ds_error(429, "Throttling.RateQuota", headers={"Retry-After": "2"}))
    assert hook_on(service).get_job(TASK_ID).status == "PENDING"
    assert len(service.requests) == 2
    service = FakeDashScope()
    service.faults.append(ds_error(500, "InternalError"))
    with pytest.raises(SubmissionOutcomeUnknownError):
        hook_on(service).submit_job(VideoRequest(prompt="a horse"))
    assert len(service.creates) == 1  # never sent twice


def test_a_wrong_key_on_dashscope(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST, password="not-the-key")
    with pytest.raises(AuthenticationError, match="InvalidApiKey"):
        hook_on(FakeDashScope()).submit_job(VideoRequest(prompt="a horse"))


def test_test_connection_on_dashscope(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    ok, message = hook_on(FakeDashScope()).test_connection()
    assert ok, message
    assert "DashScope" in message
    connection(host=DS_HOST, password="ds-wrong-key-5Hq2")
    ok, message = hook_on(FakeDashScope()).test_connection()
    assert not ok
    assert "refused" in message
    assert "ds-wrong-key-5Hq2" not in message


def test_the_operator_and_its_rows_take_the_new_fields() -> None:
    from airflow_provider_happyhorse.operators.fields import request_from_arguments
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

    operator = GenerateVideoOperator(
        task_id="r2v",
        prompt="character1 rides",
        task="reference",
        image_urls=[IMAGE],
        resolution="1080P",
        seed=9,
        watermark=False,
        extra_fields={"callback_url": "https://cb.example/x"},
    )
    expected = VideoRequest(
        prompt="character1 rides",
        task="reference",
        image_urls=[IMAGE],
        resolution="1080P",
        seed=9,
        watermark=False,
        extra_fields={"callback_url": "https://cb.example/x"},
    )
    assert operator.video_request() == expected
    assert {"source_video", "extra_fields"} <= set(GenerateVideoOperator.template_fields)
    row = {"prompt": "night", "source_video": VIDEO, "audio_setting": "origin"}
    assert request_from_arguments(row).effective_task == "edit"


@pytest.mark.parametrize(
    ("host", "fields", "words"),
    [
        (HOST, {"aspect_ratio": "3:4"}, "aspect_ratio: happyhorse.app takes '16:9', '9:16' or '1:1' (got '3:4')"),
        (DS_HOST, {"image_urls": [IMAGE], "aspect_ratio": "4:3"}, "task 'first_frame' on Alibaba Cloud Model Studio"),
        (DS_HOST, {"prompt": CJK * 2501}, "this one counts 5,002"),
    ],
)
def test_the_operator_holds_a_request_to_its_connections_rules_before_anything_is_written(
    connection: ConnectionSetter, host: str, fields: dict[str, Any], words: str
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from support.context import DictStore, make_context

    connection(host=host)
    service: FakeDashScope | FakeService = FakeDashScope() if host == DS_HOST else FakeService()
    operator = GenerateVideoOperator(task_id="render", **{"prompt": "a horse", **fields})
    operator.hook = hook_on(service)
    store = DictStore()
    with pytest.raises(AirflowFailException) as raised:
        operator.execute(make_context(store))
    assert words in str(raised.value)
    assert str(raised.value).endswith("Nothing was submitted.")
    assert service.requests == []
    assert store.values == {}  # no pending marker either


# -- cancel (issue 23, item 4) ---------------------------------------------------------------------------------


def test_happyhorse_app_has_no_cancel(connection: ConnectionSetter) -> None:
    connection(host=HOST)
    service = FakeService()
    assert hook_on(service).cancel_job("n92abc123hh10") is None
    assert service.requests == []


@pytest.mark.parametrize(
    ("reply", "outcome", "words"),
    [
        (None, "cancelled", "while it was still queued (PENDING): nothing was billed"),
        (ds_error(400, "UnsupportedOperation"), "running", "cancels only queued jobs: it runs to its end and will be"),
        (ds_error(500, "InternalError", "boom"), "unknown", "Could not cancel job"),
    ],
)
def test_dashscope_cancels_a_queued_job_only(
    connection: ConnectionSetter, reply: Any, outcome: str, words: str
) -> None:
    connection(host=DS_HOST)
    service = FakeDashScope()
    if reply is not None:
        service.faults.append(reply)
    cancellation = hook_on(service).cancel_job(TASK_ID)
    assert cancellation is not None
    assert cancellation.outcome == outcome
    assert words in cancellation.message
    assert [request.url.path for request in service.cancels] == [f"/api/v1/tasks/{TASK_ID}/cancel"]
    assert service.cancels[0].method == "POST"


def timed_out() -> dict[str, Any]:
    from airflow_provider_happyhorse.models import JobEvent

    return JobEvent.timed_out(
        TASK_ID,
        deadline="2026-12-06T09:00:00+00:00",
        detail="last status PENDING",
        finished_at="2026-12-06T09:00:00+00:00",
    ).payload()


@pytest.mark.parametrize(
    ("host", "words", "cancels"),
    [
        (DS_HOST, "Cancelled job 0385dc79-5ff8-4d82-bcb6-87a3c5f2b9e1 on Alibaba Cloud Model Studio", 1),
        (HOST, "it may still complete on the service (there is no cancel endpoint)", 0),
    ],
)
def test_the_operator_cancels_at_the_deadline_where_the_service_can(
    connection: ConnectionSetter, host: str, words: str, cancels: int
) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_provider_happyhorse.render import event_of

    connection(host=host)
    service = FakeDashScope()
    with pytest.raises(AirflowException) as raised:
        event_of(hook_on(service), timed_out(), lambda: TASK_ID, cancel_at_deadline=True)
    assert words in str(raised.value)
    assert "did not finish before its deadline" in str(raised.value)
    assert len(service.cancels) == cancels


def test_a_sensor_never_cancels(connection: ConnectionSetter) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_provider_happyhorse.render import event_of

    connection(host=DS_HOST)
    service = FakeDashScope()
    with pytest.raises(AirflowException, match="there is no cancel endpoint"):
        event_of(hook_on(service), timed_out(), lambda: TASK_ID)
    assert service.cancels == []


@pytest.mark.parametrize(
    ("host", "waiting", "words", "cancels"),
    [
        (DS_HOST, True, "while it was still queued (PENDING): nothing was billed. A retry of this task submits", 1),
        (HOST, True, "HappyHorse has no cancel endpoint", 0),
        (DS_HOST, False, "HappyHorse has no cancel endpoint", 0),
    ],
)
def test_on_kill_cancels_the_job_a_blocking_wait_is_on(
    connection: ConnectionSetter,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    host: str,
    waiting: bool,
    words: str,
    cancels: int,
) -> None:
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

    connection(host=host)
    service = FakeDashScope()
    operator = GenerateVideoOperator(task_id="render", prompt="a horse", deferrable=False)
    operator.hook = hook_on(service)
    operator._waiting_on = TASK_ID if waiting else None
    caplog.set_level(logging.WARNING)
    operator.on_kill()
    assert words in caplog.text + capsys.readouterr().out
    assert len(service.cancels) == cancels


def test_on_kill_says_a_running_job_will_be_billed(
    connection: ConnectionSetter, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

    connection(host=DS_HOST)
    service = FakeDashScope()
    service.faults.append(ds_error(400, "UnsupportedOperation"))
    operator = GenerateVideoOperator(task_id="render", prompt="a horse", deferrable=False)
    operator.hook = hook_on(service)
    operator._waiting_on = TASK_ID
    caplog.set_level(logging.WARNING)
    operator.on_kill()
    logged = caplog.text + capsys.readouterr().out
    assert "it runs to its end and will be billed. A new try of this task re-attaches to it." in logged


# -- a retry after a cancel at the deadline ----------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [True, False])
def test_a_retry_after_a_cancel_before_billing_submits_again_and_says_it_is_paid_once(
    connection: ConnectionSetter,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    deferrable: bool,
) -> None:
    from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred

    from airflow_provider_happyhorse.job_store import JobRecordStore
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from support.context import DictStore, make_context

    connection(host=DS_HOST)
    service = FakeDashScope(statuses=["PENDING"])
    store = DictStore()

    def operator() -> GenerateVideoOperator:
        task = GenerateVideoOperator(task_id="video", prompt="a horse", resolution="720P", deferrable=deferrable)
        task.hook = hook_on(service)  # type: ignore[misc]
        return task

    # The first try submits, then its job is still queued at the deadline: cancelled, nothing billed.
    first = operator()
    first.deferrable = True
    with pytest.raises(TaskDeferred):
        first.execute(make_context(store))
    with pytest.raises(AirflowException) as raised:
        operator().execute_complete(make_context(store), timed_out())
    assert (
        "while it was still queued (PENDING): nothing was billed. A retry of this task submits the request again, "
        "paid once (the cancelled job was not billed)." in str(raised.value)
    )
    assert len(service.cancels) == 1
    assert store.values[JobRecordStore.key]["job_id"] == TASK_ID  # the saved job id is kept
    # The retry reads the kept job: CANCELED (the service's word for a job cancelled while queued).
    service.statuses = ["CANCELED", "PENDING"]
    caplog.set_level(logging.INFO)
    if deferrable:
        with pytest.raises(TaskDeferred):
            operator().execute(make_context(store))
    else:
        service.statuses = ["CANCELED", "SUCCEEDED"]
        assert operator().execute(make_context(store))["status"] == "SUCCEEDED"
    assert len(service.creates) == 2  # submitted again: the cancelled job was never billed
    logged = caplog.text + capsys.readouterr().out
    assert (
        f"Job {TASK_ID} from an earlier try was cancelled (CANCELED) while it was queued, so it was not billed: "
        "submitting the request again, which is paid once" in logged
    )
    assert "Re-attached" not in logged


def test_happyhorse_app_reports_its_ratio_and_prompt_problems_at_once(connection: ConnectionSetter) -> None:
    message = refused_by(connection, HOST, {"prompt": "p" * 3000, "aspect_ratio": "3:4"})
    assert message.startswith(
        "Invalid HappyHorse request for this connection: aspect_ratio: happyhorse.app takes '16:9', '9:16' or '1:1' "
        "(got '3:4'); "
    )
    assert "; prompt: happyhorse.app takes at most 2500 characters (got 3,000 characters): shorten it" in message

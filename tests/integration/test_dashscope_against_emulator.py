"""The hook against the emulator in the DashScope dialect on loopback (issue 23): every task from submit to a
result URL whose clip is what the request asked for, the sync and the async path, refusals before paying,
error codes and the connection check."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import httpx
import pytest

from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.exceptions import AuthenticationError, InvalidRequestError, RateLimitError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, shared_async_transports
from airflow_provider_happyhorse.models import JobEvent, VideoRequest

if TYPE_CHECKING:
    from happyhorse_emulator import EmulatorServer


@pytest.fixture(scope="module")
def dashscope_server() -> Iterator[EmulatorServer]:
    from happyhorse_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(speed=0.01, dialect="dashscope")) as server:
        yield server


@pytest.fixture
def dashscope(dashscope_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The DashScope emulator, fresh, and happyhorse_default pointing at it (dialect from the extra: a loopback host
    would say happyhorse)."""
    dashscope_server.restore()
    use_connection(monkeypatch, dashscope_server)
    return dashscope_server


def use_connection(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, key: str | None = None) -> None:
    connection = {
        "conn_type": "happyhorse",
        "host": server.base_url,
        "password": key or server.api_key,
        "extra": {"dialect": "dashscope"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))


def plan(job_id: str) -> WaitPlan:
    now = datetime.now(UTC)
    return WaitPlan(
        job_id=job_id,
        started_at=now,
        deadline=now + timedelta(seconds=60),
        schedule=PollSchedule(first_poll_after=0.3, min_interval=0.2, max_interval=0.5),
    )


def render(request: VideoRequest) -> JobEvent:
    hook = HappyHorseHook()
    job = hook.submit_job(request)
    assert job.status == "PENDING"
    return hook.wait_for_job(plan(job.job_id))


def probe(url: str) -> tuple[float, int, int, bool]:
    data = httpx.get(url).raise_for_status().content
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        seconds = float(container.duration or 0) / av.time_base
        return seconds, video.codec_context.width, video.codec_context.height, bool(container.streams.audio)


def test_text_to_video_at_720p_portrait(dashscope: EmulatorServer) -> None:
    done = render(VideoRequest(prompt="a horse", duration=4, aspect_ratio="9:16", resolution="720P", seed=3))
    assert done.status == "success"
    assert done.video_url is not None
    seconds, width, height, audio = probe(done.video_url)
    assert abs(seconds - 4) < 0.15
    assert (width, height) == (720, 1280)
    assert audio is True
    assert dashscope.stats()["submissions"]["accepted"] == 1


def test_an_edit_of_an_earlier_clip_lasts_as_long_as_it(dashscope: EmulatorServer) -> None:
    first = render(VideoRequest(prompt="a horse", duration=6, resolution="720P"))
    assert first.video_url is not None
    edit = VideoRequest(prompt="make it night", task="edit", source_video=first.video_url, audio_setting="origin")
    done = render(edit)
    assert done.status == "success", done.message
    assert done.video_url is not None
    seconds, width, height, _ = probe(done.video_url)
    assert abs(seconds - 6) < 0.15
    assert (width, height) == (1920, 1080)  # the edit's default resolution is 1080P, the source 16:9


def test_reference_to_video_with_a_character_sheet(dashscope: EmulatorServer) -> None:
    sheets = [f"{dashscope.base_url}/_emulator/images/{side}x{side}.png" for side in (512, 640)]
    request = VideoRequest(
        prompt="character1 and character2 gallop", task="reference", image_urls=sheets, duration=3, aspect_ratio="1:1"
    )
    done = render(request.model_copy(update={"resolution": "720P"}))
    assert done.status == "success", done.message
    assert done.video_url is not None
    seconds, width, height, _ = probe(done.video_url)
    assert abs(seconds - 3) < 0.15
    assert (width, height) == (720, 720)
    # A sheet below the service's 400 px rule: the service refuses it, by its code, and nothing is created.
    small = VideoRequest(
        prompt="character1", task="reference", image_urls=[f"{dashscope.base_url}/_emulator/images/300x300.png"]
    )
    with pytest.raises(InvalidRequestError) as raised:
        HappyHorseHook().submit_job(small)
    assert raised.value.error_code == "InvalidParameter"
    assert dashscope.stats()["jobs"]["total"] == 1


def test_the_trigger_path_on_dashscope(dashscope: EmulatorServer) -> None:
    async def run() -> JobEvent:
        hook = HappyHorseHook()
        job = await hook.asubmit_job(VideoRequest(prompt="a horse", duration=3, resolution="720P"))
        return await hook.await_job(plan(job.job_id))

    done = asyncio.run(run())
    assert done.status == "success"
    assert shared_async_transports.open_transports() == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"image_urls": ["https://img.example/a.png"] * 2}, "image_urls: a first and a last frame"),
        ({"mode": "pro"}, "mode: mode 'pro'"),
        ({"duration": 4.5}, "whole seconds"),
    ],
)
def test_refused_before_anything_is_sent(dashscope: EmulatorServer, fields: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        HappyHorseHook().submit_job(VideoRequest.parse({"prompt": "a horse", **fields}))
    assert dashscope.stats()["submissions"]["total"] == 0


def test_a_wrong_key_and_the_connection_check(dashscope: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = HappyHorseHook().test_connection()
    assert ok, message
    use_connection(monkeypatch, dashscope, key="ds-not-a-key-8Kd")
    with pytest.raises(AuthenticationError) as raised:
        HappyHorseHook().submit_job(VideoRequest(prompt="x"))
    assert raised.value.error_code == "InvalidApiKey"
    ok, message = HappyHorseHook().test_connection()
    assert not ok
    assert "refused" in message
    assert dashscope.stats()["jobs"]["total"] == 0


def test_an_unknown_task_fails_naming_expiry(dashscope: EmulatorServer) -> None:
    job = HappyHorseHook().get_job("0385dc79-5ff8-4d82-bcb6-87a3c5f2b9e1")
    assert job.status == "UNKNOWN"
    assert job.error_message is not None
    assert "expired" in job.error_message


def test_cancel_a_queued_job_and_not_a_running_one(dashscope: EmulatorServer) -> None:
    dashscope.configure(max_concurrent_per_key=1, base_seconds=500)  # the first renders for a while, the second waits
    hook = HappyHorseHook()
    running = hook.submit_job(VideoRequest(prompt="first", duration=3, resolution="720P"))
    queued = hook.submit_job(VideoRequest(prompt="second", duration=3, resolution="720P"))
    assert hook.get_job(queued.job_id).status == "PENDING"
    cancelled = hook.cancel_job(queued.job_id)
    assert cancelled is not None
    assert (cancelled.outcome, "nothing was billed" in cancelled.message) == ("cancelled", True)
    after = hook.get_job(queued.job_id)
    assert after.status == "CANCELED"
    assert after.state.value == "failed"
    assert hook.get_job(running.job_id).status == "RUNNING"
    refused = hook.cancel_job(running.job_id)
    assert refused is not None
    assert (refused.outcome, "will be billed" in refused.message) == ("running", True)


def test_stored_clips_are_verified_by_what_their_task_promises(dashscope: EmulatorServer, tmp_path: Path) -> None:
    """Issue 23, item 3: a 720P portrait draft is held to its short side and ratio; an edit of it to the duration
    the answer's usage reports, not to a ratio it never took; the usage is kept in the result."""
    from airflow_provider_happyhorse.core.record import RenderRecord
    from airflow_provider_happyhorse.exceptions import ClipMismatchError
    from airflow_provider_happyhorse.storage import store_clip

    hook = HappyHorseHook()
    now = datetime.now(UTC)
    draft = VideoRequest(prompt="a horse", duration=4, aspect_ratio="9:16", resolution="720P")
    first = render(draft)
    assert first.video_url is not None
    record = RenderRecord.submitting(draft, now).succeeded(first)
    assert record.usage is not None
    assert record.usage.output_video_duration == 4
    clip, _ = store_clip(
        hook, job_id=first.job_id, url=first.video_url, destination=str(tmp_path / "draft.mp4"), record=record
    )
    assert clip.verified is True
    # The same clip held to a 1080P promise: the resolution is the mismatch named, and nothing is stored.
    wrong = RenderRecord.submitting(draft.model_copy(update={"resolution": "1080P"}), now).succeeded(first)
    with pytest.raises(ClipMismatchError) as raised:
        store_clip(hook, job_id=first.job_id, url=first.video_url, destination=str(tmp_path / "x.mp4"), record=wrong)
    assert raised.value.mismatches == ["resolution: wanted 1080P (a short side of 1080 px), got 720x1280"]
    assert not (tmp_path / "x.mp4").exists()

    edit = VideoRequest(prompt="make it night", task="edit", source_video=first.video_url)
    done = render(edit)
    assert done.video_url is not None
    edited = RenderRecord.submitting(edit, now).succeeded(done)
    assert edited.usage is not None
    assert edited.usage.output_video_duration == 4  # the source's length, not the request's default 5 s
    clip, _ = store_clip(
        hook, job_id=done.job_id, url=done.video_url, destination=str(tmp_path / "night.mp4"), record=edited
    )
    assert clip.verified is True  # a portrait edit is not held to the 16:9 its request never chose
    result = edited.with_stored(clip).result()
    assert result["usage"]["output_video_duration"] == 4
    assert RenderRecord.from_result(result).usage == edited.usage


def test_a_4_3_text_clip_and_a_5000_character_prompt_are_rendered_stored_and_verified(
    dashscope: EmulatorServer, tmp_path: Path
) -> None:
    """Issue 23, item 2: DashScope's own rules. A 4:3 text-to-video clip at 720P is 960x720, stored and verified
    against its ratio and short side; held to 3:4 instead, the ratio is the mismatch named. A prompt of 5000
    characters (2500 CJK) is sent; 2501 CJK characters are refused before anything is sent."""
    from airflow_provider_happyhorse.core.record import RenderRecord
    from airflow_provider_happyhorse.exceptions import ClipMismatchError
    from airflow_provider_happyhorse.storage import store_clip

    hook = HappyHorseHook()
    now = datetime.now(UTC)
    request = VideoRequest(prompt="p" * 4990 + " a horse", duration=3, aspect_ratio="4:3", resolution="720P")
    done = render(request)
    assert done.status == "success", done.message
    assert done.video_url is not None
    record = RenderRecord.submitting(request, now).succeeded(done)
    assert record.usage is not None
    assert (record.usage.ratio, record.usage.SR) == ("4:3", 720)
    clip, _ = store_clip(
        hook, job_id=done.job_id, url=done.video_url, destination=str(tmp_path / "wide.mp4"), record=record
    )
    assert clip.verified is True
    assert clip.media is not None
    assert (clip.media.width, clip.media.height) == (960, 720)
    assert (tmp_path / "wide.mp4").exists()
    portrait = RenderRecord.submitting(request.model_copy(update={"aspect_ratio": "3:4"}), now).succeeded(done)
    with pytest.raises(ClipMismatchError) as raised:
        store_clip(hook, job_id=done.job_id, url=done.video_url, destination=str(tmp_path / "x.mp4"), record=portrait)
    assert raised.value.mismatches == ["aspect ratio: wanted 3:4, got 960x720"]

    cjk = render(VideoRequest(prompt="马" * 2500, duration=3, resolution="720P", aspect_ratio="3:4"))
    assert cjk.status == "success", cjk.message
    assert cjk.video_url is not None
    assert probe(cjk.video_url)[1:3] == (720, 960)
    before = dashscope.stats()["submissions"]["total"]
    with pytest.raises(InvalidRequestError, match="this one counts 5,002"):
        hook.submit_job(VideoRequest(prompt="马" * 2501, duration=3))
    assert dashscope.stats()["submissions"]["total"] == before


def test_the_operator_estimates_in_the_connections_currency_and_keeps_the_usage(
    dashscope: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 23, items 6 and 3 end to end on a worker: a 720P draft on a DashScope connection with a price table is
    estimated in USD, held to max_cost, stored verified, and its result carries the cost, its unit and the usage;
    max_credits on that connection is refused before anything is sent."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from support.context import DictStore, make_context

    connection = {
        "conn_type": "happyhorse",
        "host": dashscope.base_url,
        "password": dashscope.api_key,
        "extra": {"dialect": "dashscope", "price_per_second": {"720P": 0.14, "1080P": 0.28}, "currency": "USD"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))
    fields: dict[str, Any] = {"prompt": "a horse", "duration": 3, "resolution": "720P", "deferrable": False}
    polling: dict[str, Any] = {"first_poll_after": 0.3, "poll_interval": 0.2, "max_poll_interval": 0.5}
    with pytest.raises(AirflowFailException, match="set max_cost instead"):
        GenerateVideoOperator(task_id="over", max_credits=1000, **fields, **polling).execute(make_context(DictStore()))
    assert dashscope.stats()["jobs"]["total"] == 0

    operator = GenerateVideoOperator(
        task_id="draft", max_cost=1, output_path=str(tmp_path / "draft.mp4"), **fields, **polling
    )
    result = operator.execute(make_context(DictStore()))
    assert (result["credits_estimate"], result["cost_estimate"], result["cost_unit"]) == (None, 0.42, "USD")
    assert result["usage"]["output_video_duration"] == 3
    assert result["verified"] is True
    assert (result["media"]["width"], result["media"]["height"]) == (1280, 720)


def test_many_triggers_polling_at_once_stay_under_the_accounts_query_limit(
    dashscope: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 polls due at one instant in one event loop, one hook each as the triggerer makes them: paced by the
    connection's bucket (the dialect's 20 a second), the emulator, enforcing 20 a second, refuses none; unpaced
    (``max_queries_per_second`` 0), the same burst meets 429 Throttling.RateQuota."""
    job_id = HappyHorseHook().submit_job(VideoRequest(prompt="a horse", duration=3, resolution="720P")).job_id

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(HappyHorseHook().aget_job(job_id, max_retries=0) for _ in range(60)), return_exceptions=True
        )

    refused_before = dashscope.stats()["rate_limited"]
    started = time.monotonic()
    answers = asyncio.run(burst())
    took = time.monotonic() - started
    assert [answer for answer in answers if isinstance(answer, BaseException)] == []
    assert dashscope.stats()["rate_limited"] == refused_before
    assert took >= 59 / 20 * 0.95  # the bucket spread them: 59 intervals of 1/20 s

    time.sleep(1.1)  # the emulator's bucket fills again
    connection = {"conn_type": "happyhorse", "host": dashscope.base_url, "password": dashscope.api_key}
    connection["extra"] = {"dialect": "dashscope", "max_queries_per_second": 0}
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))
    answers = asyncio.run(burst())
    throttled = [answer for answer in answers if isinstance(answer, RateLimitError)]
    assert throttled
    assert dashscope.stats()["rate_limited"] - refused_before == len(throttled)

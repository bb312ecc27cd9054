"""The hook against the real emulator on loopback: happy path, errors, the submission rule, async polling,
and the model and the emulator agreeing on what a valid request is."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC
from typing import Any

import av
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_happyhorse.core.dialects import HAPPYHORSE
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.exceptions import (
    AccountError,
    AuthenticationError,
    InvalidRequestError,
    SubmissionOutcomeUnknownError,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, shared_async_transports
from airflow_provider_happyhorse.models import JobState, VideoRequest
from happyhorse_emulator import EmulatorServer


def use_connection(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, **extra: Any) -> None:
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))


def fast_hook() -> HappyHorseHook:
    return HappyHorseHook(sleep=lambda seconds: None)  # retries without waiting; the emulator is real


def open_mp4(url: str) -> tuple[float, int, int, bool]:
    data = httpx.get(url).raise_for_status().content
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        seconds = float(container.duration or 0) / av.time_base
        return seconds, video.codec_context.width, video.codec_context.height, bool(container.streams.audio)


def test_submit_wait_and_fetch_a_real_mp4(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    use_connection(monkeypatch, emulator)
    hook = HappyHorseHook()
    request = VideoRequest(prompt="a horse", duration=6, aspect_ratio="9:16", sound=False)
    job = hook.submit_job(request)
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    done = hook.wait_for_job(
        WaitPlan(
            job_id=job.job_id,
            started_at=now,
            deadline=now + timedelta(seconds=30),
            schedule=PollSchedule(first_poll_after=0.3, min_interval=0.1, max_interval=0.5),
        )
    )
    assert done.status == "success"
    assert done.video_url is not None
    seconds, width, height, audio = open_mp4(done.video_url)
    assert abs(seconds - 6) < 0.15
    assert width < height  # 9:16
    assert audio is False
    stats = emulator.stats()
    assert stats["submissions"]["accepted"] == 1
    assert stats["duplicate_submissions"] == 0


def test_wrong_key_and_account_errors(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": "not-a-key"}
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))
    with pytest.raises(AuthenticationError) as raised:
        HappyHorseHook().submit_job(VideoRequest(prompt="x"))
    assert raised.value.status_code == 401
    assert "not-a-key" not in str(raised.value)
    emulator.configure(no_credit_keys=["broke-key"])
    connection["password"] = "broke-key"
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))
    with pytest.raises(AccountError) as account:
        HappyHorseHook().submit_job(VideoRequest(prompt="x"))
    assert account.value.status_code == 402
    assert emulator.stats()["jobs"]["total"] == 0


def test_test_connection_tells_the_three_cases_apart(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    use_connection(monkeypatch, emulator)
    assert HappyHorseHook().test_connection()[0] is True
    monkeypatch.setenv(
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT",
        json.dumps({"conn_type": "happyhorse", "host": emulator.base_url, "password": "wrong"}),
    )
    ok, message = HappyHorseHook().test_connection()
    assert (ok, "refused" in message) == (False, True)
    unreachable = {"conn_type": "happyhorse", "host": "http://127.0.0.1:9", "password": "k"}
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(unreachable))
    ok, message = HappyHorseHook().test_connection()
    assert (ok, "Could not reach" in message) == (False, True)
    assert emulator.stats()["submissions"]["total"] == 0


@pytest.mark.parametrize(
    ("fault", "jobs_created"),
    [
        ({"drop_after_create_rate": 1.0}, 1),
        ({"drop_before_create_rate": 1.0}, 0),
        ({"slow_response_rate": 1.0, "slow_response_seconds": 2.0}, 1),
    ],
)
def test_submission_rule_against_real_faults(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, fault: dict[str, Any], jobs_created: int
) -> None:
    """After the body was sent, a lost answer is never retried: one POST, and an 'outcome unknown' error."""
    use_connection(monkeypatch, emulator, timeout=0.5)
    emulator.configure(faults={**fault, "faults_on": ["generate"]})
    with pytest.raises(SubmissionOutcomeUnknownError, match="outcome is unknown"):
        fast_hook().submit_job(VideoRequest(prompt="the double-submit trap"))
    stats = emulator.stats()
    assert stats["submissions"]["total"] == 1
    assert stats["jobs"]["total"] == jobs_created


def test_rate_limited_submission_is_retried_and_creates_one_job(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, emulator, submit_max_retries=10)
    emulator.configure(seed=3, faults={"rate_limit_storm_rate": 0.6, "faults_on": ["generate"]})
    job = fast_hook().submit_job(VideoRequest(prompt="through the storm"))
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 1
    assert stats["submissions"]["accepted"] == 1
    assert stats["submissions"]["total"] >= 1
    assert job.job_id


def test_status_polls_ride_out_every_poll_fault(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    use_connection(monkeypatch, emulator, timeout=0.5, max_retries=30)
    job = HappyHorseHook().submit_job(VideoRequest(prompt="x", duration=3))
    emulator.configure(
        seed=11,
        faults={
            "faults_on": ["status"],
            "server_error_rate": 0.15,
            "rate_limit_storm_rate": 0.15,
            "malformed_body_rate": 0.15,
            "slow_response_rate": 0.1,
            "slow_response_seconds": 1.0,
            "status_variant_rate": 1.0,
        },
    )
    hook = HappyHorseHook(sleep=lambda seconds: None)
    for _ in range(200):
        status = hook.get_job(job.job_id)
        if status.state is not JobState.PENDING:
            break
    assert status.state is JobState.SUCCEEDED
    assert status.status in {"SUCCESS", "COMPLETED"}
    assert emulator.stats()["faults"]["total"] > 0


async def test_many_concurrent_async_polls_share_one_pool(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, emulator)
    job = await HappyHorseHook().asubmit_job(VideoRequest(prompt="x", duration=3, sound=False))
    hooks = [HappyHorseHook() for _ in range(200)]
    statuses = await asyncio.gather(*(hook.aget_job(job.job_id) for hook in hooks))
    assert {status.job_id for status in statuses} == {job.job_id}
    assert emulator.stats()["status_calls"]["total"] == 200
    assert shared_async_transports.open_transports() == 0


# -- the model and the emulator agree on what is valid ------------------------------------------------

FIELD_VALUES: dict[str, list[Any]] = {
    "prompt": ["a horse", "", "   ", "x" * 2500, "x" * 2501, "马" * 2500, "x" * 5000, "x" * 5001, None, 7],
    "mode": ["std", "pro", "ultra", None, ""],
    "duration": [3, 5, 15, 7.5, 2, 16, 0, "5", True, None],
    "aspect_ratio": ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", None],
    "image_urls": [
        None,
        [],
        ["https://img.test/a.png"],
        ["https://img.test/a.png", "http://img.test/b.png"],
        ["https://img.test/a.png"] * 3,
        ["ftp://img.test/a.png"],
        ["not a url"],
    ],
    "sound": [True, False, None, "yes"],
    "cfg_scale": [0, 0.5, 1, 1.5, -0.1, None, False],
    "multi_shots": [False, True, None],
    "multi_prompt": [
        None,
        [],
        [{"prompt": "one"}],
        [{"prompt": "one", "duration": 2}, {"prompt": "two", "duration": 3}],
        [{"prompt": "one", "duration": 2}, {"prompt": "two"}],
        [{"prompt": ""}],
        [{"duration": 5}],
    ],
    "happyhorse_elements": [None, [], [{"name": "hero", "anything": [1, 2]}]],
}

request_dicts = st.fixed_dictionaries(
    {},
    optional={field: st.sampled_from(values) for field, values in FIELD_VALUES.items()},
).map(lambda fields: {key: value for key, value in fields.items() if value is not None})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=request_dicts)
def test_model_and_emulator_agree_on_validity(emulator: EmulatorServer, fields: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    try:
        accepted = VideoRequest.parse(fields)
        # The emulator speaks happyhorse.app here: what the client sends is what that dialect does not refuse.
        if HAPPYHORSE.refusal(accepted) is not None:
            accepted = None
    except InvalidRequestError:
        accepted = None
    if accepted is not None:
        # Whatever the model accepts, the client sends as to_body(): the emulator must take it.
        answer = httpx.post(f"{emulator.base_url}/api/generate", json=accepted.to_body(), headers=headers)
        assert answer.status_code == 200, (fields, answer.text)
    raw = httpx.post(
        f"{emulator.base_url}/api/generate", json={"model": "happyhorse-1.0/video", **fields}, headers=headers
    )
    if raw.status_code == 200:
        # Whatever the emulator takes as sent, the model accepts too.
        assert accepted is not None, (fields, raw.text)
    else:
        assert raw.status_code in (400, 422), raw.text

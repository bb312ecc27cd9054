"""HappyHorseJobTrigger.run() against a scripted service, with time controlled (nothing really sleeps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, shared_async_transports
from airflow_provider_happyhorse.models import JobEvent, VideoRequest
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
from support.clock import START, FakeClock
from support.service import API_KEY, CONN_JSON, FakeService, fail, reply


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def make_record(
    service: FakeService,
    *,
    deadline: str = (START + timedelta(minutes=10)).isoformat(),
    submitted_at: str = START.isoformat(),
    first_poll_after: float = 60.0,
    min_poll_interval: float = 5.0,
    max_poll_interval: float = 60.0,
    end_task_on_success: bool = False,
    request: VideoRequest | None = None,
) -> RenderRecord:
    """
    A submitted job's record, as an operator defers on it; without ``request`` the wait has no render-time
    estimate, so it wakes only to poll.
    """
    return RenderRecord(
        fingerprint=None if request is None else request.fingerprint(),
        request=request,
        job_id=service.job_id,
        started_at=datetime.fromisoformat(submitted_at),
        deadline=datetime.fromisoformat(deadline),
        schedule=PollSchedule(
            first_poll_after=first_poll_after, min_interval=min_poll_interval, max_interval=max_poll_interval
        ),
        end_task_on_success=end_task_on_success,
    )


def with_service(trigger: HappyHorseJobTrigger, service: FakeService) -> HappyHorseJobTrigger:
    clock = service.clock
    transport = service.transport()
    # The one seam: the hook, with the service's transport and the fake clock (no jitter).
    trigger._make_hook = lambda: HappyHorseHook(  # type: ignore[method-assign]
        "happyhorse_default", async_transport=transport, async_sleep=clock.async_sleep, rng=lambda: 0.5, clock=clock
    )
    return trigger


def make_trigger(service: FakeService, **overrides: Any) -> HappyHorseJobTrigger:
    record = make_record(service, **overrides)
    return with_service(HappyHorseJobTrigger(record=record, happyhorse_conn_id="happyhorse_default"), service)


async def run_to_end(trigger: HappyHorseJobTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def test_serialize_mirrors_init_and_round_trips() -> None:
    service = FakeService(FakeClock())
    record = make_record(service)
    trigger = HappyHorseJobTrigger(record=record, happyhorse_conn_id="happyhorse_default")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger"
    assert kwargs == {"record": record.model_dump(mode="json"), "happyhorse_conn_id": "happyhorse_default"}
    rebuilt = HappyHorseJobTrigger(**kwargs)
    assert rebuilt.record == record
    assert rebuilt.serialize() == (classpath, kwargs)
    # JSON primitives only, and never the key (Airflow prints kwargs in logs).
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert API_KEY not in repr(trigger)


# A trigger row written by release 533297c (GenerateVideoOperator.execute, then HappyHorseJobSensor.execute,
# against the fake service), as a running deployment's DB holds it when this release is installed.
EARLIER_OPERATOR_TRIGGER = json.loads(
    """["airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger", {"job_id": "n92abc123hh10",
    "happyhorse_conn_id": "happyhorse_default", "deadline": "2026-12-06T08:23:20.038403+00:00",
    "submitted_at": "2026-12-06T07:23:20.037194+00:00", "first_poll_after": 43.580000000000005,
    "min_poll_interval": 2.0, "max_poll_interval": 120.0, "result": {"job_id": "n92abc123hh10",
    "status": "IN_PROGRESS", "video_url": null, "request": {"model": "happyhorse-1.0/video", "prompt": "a horse",
    "mode": "std", "duration": 5, "aspect_ratio": "16:9", "sound": true, "cfg_scale": 0.5, "multi_shots": false},
    "credits_estimate": 300.0, "submitted_at": "2026-12-06T07:23:20.037194+00:00"},
    "end_task_on_success": false}]"""
)
EARLIER_SENSOR_TRIGGER = json.loads(
    """["airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger", {"job_id": "n92abc123hh10",
    "happyhorse_conn_id": "happyhorse_default", "deadline": "2026-12-13T07:23:21.378618+00:00",
    "submitted_at": "2026-12-06T07:23:21.378618+00:00", "first_poll_after": 0.0, "min_poll_interval": 60.0,
    "max_poll_interval": 120.0, "result": null, "end_task_on_success": true}]"""
)


def test_a_trigger_row_of_the_earlier_release_still_deserializes() -> None:
    from airflow.serialization.serialized_objects import BaseSerialization

    classpath, kwargs = EARLIER_OPERATOR_TRIGGER
    assert classpath == "airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger"
    # As the triggerer does: the row's kwargs through Airflow's serialization, then the class.
    kwargs = BaseSerialization.deserialize(BaseSerialization.serialize(kwargs))
    trigger = HappyHorseJobTrigger(**kwargs)
    plan = trigger.plan()
    assert plan.job_id == "n92abc123hh10"
    assert plan.started_at == datetime(2026, 12, 6, 7, 23, 20, 37194, tzinfo=UTC)
    assert plan.deadline == datetime(2026, 12, 6, 8, 23, 20, 38403, tzinfo=UTC)
    assert plan.since == "submission"
    assert (plan.schedule.first_poll_after, plan.schedule.min_interval, plan.schedule.max_interval) == (
        43.580000000000005,
        2.0,
        120.0,
    )
    assert trigger.record.end_task_on_success is False
    assert trigger.record.request == VideoRequest(prompt="a horse")
    # What it knew of the result is kept: the request, its estimate and the submission time.
    event = JobEvent(status="success", job_id="n92abc123hh10", finished_at="2026-12-06T07:24:03+00:00")
    result = trigger.record.succeeded(event).result()
    assert (result["credits_estimate"], result["submitted_at"]) == (300, "2026-12-06T07:23:20.037194+00:00")
    # Serialized again, it takes this release's shape.
    assert set(trigger.serialize()[1]) == {"record", "happyhorse_conn_id"}

    sensor = HappyHorseJobTrigger(**EARLIER_SENSOR_TRIGGER[1])
    assert sensor.plan().since == "the sensor began waiting"  # a sensor's trigger had no result
    assert sensor.record.end_task_on_success is True
    assert sensor.record.submitted_at is None
    assert sensor.plan().schedule.min_interval == 60.0


async def test_success_first_poll_near_expected_finish() -> None:
    service = FakeService(FakeClock(), finish_after=55.0)
    [event] = await run_to_end(make_trigger(service))
    assert event.payload["status"] == "success"
    assert event.payload["job_id"] == service.job_id
    assert event.payload["video_url"] == f"http://hh.test/files/{service.job_id}.mp4"
    assert service.status_calls == 1
    assert service.clock.sleeps == [60.0]
    assert shared_async_transports.open_transports() == 0


async def test_polls_of_many_triggers_fall_on_whole_seconds() -> None:
    # Submitted 0.4 s into a second: the first poll, due at 60 s, comes 0.4 s early, on the second,
    # so the event loop wakes once for every poll due in that second.
    clock = FakeClock(now=START + timedelta(seconds=0.4))
    service = FakeService(clock, finish_after=55.0)
    [event] = await run_to_end(make_trigger(service, submitted_at=clock.now.isoformat()))
    assert event.payload["status"] == "success"
    assert service.clock.sleeps == [pytest.approx(59.6)]
    assert service.clock.now.timestamp() % 1.0 == pytest.approx(0.0)


async def test_backoff_after_first_poll_grows_and_respects_floor_and_cap() -> None:
    service = FakeService(FakeClock(), finish_after=400.0)
    [event] = await run_to_end(make_trigger(service, min_poll_interval=5.0, max_poll_interval=30.0))
    assert event.payload["status"] == "success"
    sleeps = service.clock.sleeps
    assert sleeps[0] == 60.0
    assert all(5.0 <= s <= 30.0 for s in sleeps[1:])
    assert sleeps[1:] == sorted(sleeps[1:])  # never shrinks without jitter
    assert max(sleeps[1:]) == 30.0
    detection_delay = sum(sleeps) - 400.0
    assert 0 <= detection_delay <= 30.0


class FakeSupervisorComms:
    """The triggerer's channel to its supervisor, as the SDK's XCom code sees it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def asend(self, message: Any) -> None:
        self.sent.append(message)

    def send(self, message: Any) -> None:  # Airflow before 3.3 masks secrets synchronously (off the loop)
        self.sent.append(message)


async def test_success_ends_task_from_triggerer_storing_result_xcoms(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from airflow.sdk.execution_time import task_runner

    comms = FakeSupervisorComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    service = FakeService(FakeClock(), finish_after=10.0, final_status="COMPLETED")
    # A 5 s std render with sound: 300 credits.
    trigger = make_trigger(service, end_task_on_success=True, request=VideoRequest(prompt="a horse", duration=5))
    trigger.task_instance = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=3)  # type: ignore[assignment]
    [event] = await run_to_end(trigger)
    assert isinstance(event, TaskSuccessEvent)
    # Not in the event: Airflow 3.3.2 would store event XComs JSON-encoded twice.
    assert event.xcoms is None
    set_xcoms = [message for message in comms.sent if type(message).__name__ == "SetXCom"]
    stored = {message.key: message for message in set_xcoms}
    assert set(stored) == {"return_value", "job_id", "_link_HappyHorseVideoLink"}
    assert {(m.dag_id, m.run_id, m.task_id, m.map_index) for m in set_xcoms} == {("d", "r", "t", 3)}
    # The key went to the supervisor only to be masked in its logs.
    assert all(type(message).__name__ in ("SetXCom", "MaskSecret") for message in comms.sent)
    result = stored["return_value"].value
    assert isinstance(result, dict)  # a dict, as a worker would have stored it
    assert result["job_id"] == service.job_id
    assert result["status"] == "COMPLETED"
    assert result["video_url"].endswith(".mp4")
    assert result["credits_estimate"] == 300
    assert stored["job_id"].value == service.job_id
    # No worker runs after this event: the extra link's URL comes from the trigger too.
    assert stored["_link_HappyHorseVideoLink"].value == result["video_url"]


async def test_without_a_supervisor_channel_a_worker_finishes_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", None, raising=False)
    service = FakeService(FakeClock(), finish_after=10.0)
    [event] = await run_to_end(make_trigger(service, end_task_on_success=True))
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "success"
    assert event.payload["video_url"].endswith(".mp4")


@pytest.mark.parametrize(
    ("final_status", "reason_key"),
    [("FAILED", "error_message"), ("FAILURE", "error"), ("CANCELLED", "fail_reason")],
)
async def test_failed_job_event_carries_reason(final_status: str, reason_key: str) -> None:
    clock = FakeClock()
    service = FakeService(clock, finish_after=0.0, final_status=final_status)
    body = {"task_id": service.job_id, "status": final_status, reason_key: "nsfw prompt"}
    service.faults.append(reply(200, {"code": 200, "message": "success", "data": body}))
    [event] = await run_to_end(make_trigger(service, first_poll_after=0.0))
    assert event.payload == {
        "status": "failed",
        "job_id": service.job_id,
        "job_status": final_status,
        "message": "nsfw prompt",
        "polls": 1,
        "transient_errors": 0,
        "finished_at": clock.now.isoformat(),
    }


async def test_failure_reason_from_top_level_message() -> None:
    service = FakeService(FakeClock())
    body = {"code": 200, "message": "quota exceeded", "data": {"task_id": service.job_id, "status": "FAILED"}}
    service.faults.append(reply(200, body))
    [event] = await run_to_end(make_trigger(service, first_poll_after=0.0))
    assert event.payload["status"] == "failed"
    assert event.payload["message"] == "quota exceeded"


async def test_unknown_status_is_pending_until_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(FakeClock(), finish_after=10_000.0, pending_status="RENDERING_PREVIEW")
    deadline = START + timedelta(seconds=300)
    [event] = await run_to_end(make_trigger(service, deadline=deadline.isoformat()))
    assert event.payload["status"] == "timeout"
    assert event.payload["job_id"] == service.job_id
    assert event.payload["deadline"] == deadline.isoformat()
    # It never sleeps past the deadline, and polls once at the deadline itself.
    assert service.clock.now == deadline
    logged = capsys.readouterr().out  # Airflow's structlog writes to stdout
    assert "unknown status 'RENDERING_PREVIEW'" in logged
    assert logged.count("unknown status") == 1  # said once, not per poll


async def test_deadline_before_first_poll_still_polls_once() -> None:
    service = FakeService(FakeClock(), finish_after=10_000.0)
    deadline = START + timedelta(seconds=20)
    [event] = await run_to_end(make_trigger(service, deadline=deadline.isoformat()))
    assert event.payload["status"] == "timeout"
    assert service.status_calls == 1
    assert service.clock.sleeps == [20.0]


STORM = [
    reply(429, {"code": 429, "message": "slow down"}, {"Retry-After": "7"}),
    reply(503, {"code": 503, "message": "busy"}),
    reply(502, "<html>bad gateway</html>"),
    reply(200, "not json at all"),
    reply(200, {"code": 200, "message": "success"}),
    fail(httpx.ReadTimeout),
    fail(httpx.ConnectError),
    fail(httpx.RemoteProtocolError),
    reply(500, {"error": {"code": "internal", "message": "boom"}}),
]


async def test_storm_of_transient_errors_never_ends_it_early() -> None:
    service = FakeService(FakeClock(), finish_after=30.0)
    service.faults.extend(STORM * 3)
    deadline = (START + timedelta(hours=1)).isoformat()
    [event] = await run_to_end(make_trigger(service, first_poll_after=30.0, deadline=deadline))
    assert event.payload["status"] == "success"
    assert event.payload["transient_errors"] == len(STORM) * 3
    assert service.status_calls == len(STORM) * 3 + 1
    # Retry-After was honoured (7 s wait where the floor alone would be 5 s).
    assert 7.0 in service.clock.sleeps
    assert all(s >= 5.0 for s in service.clock.sleeps[1:])


@pytest.mark.parametrize(
    ("fault", "second_wait"),
    [
        # The server closed a kept-alive connection as it was used: poll again after the retry
        # policy's first backoff (1 s, full jitter; the test's draw halves it), not a whole interval.
        (fail(httpx.RemoteProtocolError), 0.5),
        (fail(httpx.ReadTimeout), 0.5),
        # A server that answered busy waits for the schedule (2 s + 10% of 30 s, over the 5 s floor).
        (reply(503, {"code": 503, "message": "busy"}), 5.0),
    ],
    ids=["dropped connection", "read timeout", "503"],
)
async def test_a_failed_connection_is_polled_again_soon(fault: Any, second_wait: float) -> None:
    service = FakeService(FakeClock(), finish_after=30.0)
    service.faults.append(fault)
    [event] = await run_to_end(make_trigger(service, first_poll_after=30.0))
    assert event.payload["status"] == "success"
    assert event.payload["transient_errors"] == 1
    assert service.clock.sleeps == [30.0, second_wait]


async def test_transient_errors_until_deadline_give_timeout() -> None:
    service = FakeService(FakeClock())
    service.faults.extend([reply(503, {"code": 503, "message": "busy"})] * 1000)
    deadline = START + timedelta(seconds=120)
    [event] = await run_to_end(make_trigger(service, deadline=deadline.isoformat(), first_poll_after=10.0))
    assert event.payload["status"] == "timeout"
    assert "busy" in event.payload["message"]
    assert service.clock.now == deadline


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, "AuthenticationError"), (402, "AccountError"), (403, "AccountError"), (400, "InvalidRequestError")],
)
async def test_permanent_errors_end_with_error_event(status: int, error_type: str) -> None:
    service = FakeService(FakeClock())
    service.faults.append(reply(status, {"code": status, "message": "nope"}))
    [event] = await run_to_end(make_trigger(service, first_poll_after=0.0))
    assert event.payload["status"] == "error"
    assert event.payload["error_type"] == error_type
    assert event.payload["permanent"] is True  # decided as the event is made, read by raise_for_event
    assert event.payload["job_id"] == service.job_id
    assert service.status_calls == 1
    assert API_KEY not in str(event.payload)


async def test_not_found_within_grace_is_retried_then_final() -> None:
    service = FakeService(FakeClock(), job_id="n92unknown")
    not_found = reply(404, {"code": 404, "message": "task not found"})
    service.faults.extend([not_found] * 50)
    [event] = await run_to_end(make_trigger(service, first_poll_after=10.0))
    assert event.payload["status"] == "error"
    assert event.payload["error_type"] == "NotFoundError"
    assert "permanent" not in event.payload  # a retry of the task re-attaches or submits anew
    assert service.status_calls >= 2  # at least one retry inside the 30 s grace


async def test_two_copies_of_the_trigger_are_harmless() -> None:
    """Triggers are delivered at least once: two runs of the same trigger only read, and agree."""
    service = FakeService(FakeClock(), finish_after=61.0)
    first = make_trigger(service)
    second = HappyHorseJobTrigger(**first.serialize()[1])
    second.__dict__.update({k: v for k, v in first.__dict__.items() if k.startswith("_")})
    events = [*(await run_to_end(first)), *(await run_to_end(second))]
    assert [e.payload["status"] for e in events] == ["success", "success"]
    assert service.posts == 0


async def test_on_kill_does_not_call_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(FakeClock())
    trigger = make_trigger(service)
    await trigger.on_kill()
    await trigger.cleanup()
    assert service.requests == []
    said = capsys.readouterr().out
    assert "the task was killed, or Airflow moved this trigger to another triggerer" in said
    assert "Nothing was cancelled" in said
    assert "billed" not in said  # a moved trigger's job is not billed a second time


async def test_a_queued_job_is_not_polled_again_before_a_whole_render_could_pass() -> None:
    service = FakeService(FakeClock(), finish_after=200.0, pending_status="QUEUED")
    [event] = await run_to_end(make_trigger(service, first_poll_after=60.0, min_poll_interval=5.0))
    assert event.payload["status"] == "success"
    assert service.clock.sleeps[:4] == [60.0, 60.0, 60.0, 60.0]
    assert service.status_calls == 4


# Runs in a fresh interpreter: freezing is once per process, and this one may have frozen already.
FREEZE_PROBE = """
import asyncio, gc, json, os, socket
from datetime import datetime, timedelta, timezone
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger

closed = socket.socket()
closed.bind(("127.0.0.1", 0))  # bound, never listening: the poll is refused at once
past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
kwargs = dict(
    job_id="job-1", happyhorse_conn_id="happyhorse_probe", deadline=past, submitted_at=past,
    first_poll_after=0.0, min_poll_interval=2.0, max_poll_interval=120.0,
)
os.environ["AIRFLOW_CONN_HAPPYHORSE_PROBE"] = json.dumps(
    {"conn_type": "happyhorse", "host": "http://127.0.0.1:%d" % closed.getsockname()[1], "password": "probe-key"}
)

async def run_once():
    return [event.payload["status"] async for event in HappyHorseJobTrigger(**kwargs).run()]

counts = [gc.get_freeze_count()]
statuses = asyncio.run(run_once())
counts.append(gc.get_freeze_count())
made_after = [{"n": n} for n in range(1000)]  # objects a second freeze would take along
statuses += asyncio.run(run_once())
counts.append(gc.get_freeze_count())
print(json.dumps({"counts": counts, "statuses": statuses}))
"""


@pytest.mark.parametrize("setting", [None, "false"])
def test_first_trigger_in_a_process_freezes_the_heap_once(setting: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__HAPPYHORSE__")}
    if setting is not None:
        env["AIRFLOW__HAPPYHORSE__FREEZE_TRIGGERER_HEAP"] = setting
    completed = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    probe = json.loads(completed.stdout.strip().splitlines()[-1])
    assert probe["statuses"] == ["timeout", "timeout"]
    # What the provider does, not what the interpreter did before it: some Pythons and libraries freeze a
    # few hundred objects at import (375 on 3.12), so counts are compared with the count before any trigger.
    before, after_first, after_second = probe["counts"]
    if setting == "false":
        assert after_first <= before
        assert after_second <= before
    else:
        # Airflow's modules and everything else alive at the first run; nothing more at the second
        # (frozen objects can still be freed, so the count may only drop).
        assert after_first > before + 10_000
        assert after_second <= after_first

"""
The one wait (``core.wait``), through its three drivers: blocking mode (``HappyHorseHook.wait_for_job``,
what ``GenerateVideoOperator(deferrable=False)`` calls), the trigger (``HappyHorseJobTrigger.run``) and
the sensor's poke (``HappyHorseJobSensor(deferrable=False).poke``, Airflow's poke loop played by the
test). Each row scripts the same service for all three; they must poll at the same times (the sensor
at the first poke at or after each) and end the same way.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue

from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.core.wait import WaitPlan, wait_flow
from airflow_provider_happyhorse.exceptions import JobTimeoutError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import JobEvent
from airflow_provider_happyhorse.outcomes import raise_for_event
from airflow_provider_happyhorse.sensors.happyhorse import HappyHorseJobSensor
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
from support.clock import START, FakeClock
from support.context import make_context
from support.service import API_KEY, CONN_JSON, HOST, FakeService, Reply, fail, reply, resolve

# The XCom result's keys, as every release since 0.1 writes them (downstream tasks read them).
RESULT_KEYS = (
    "job_id",
    "status",
    "video_url",
    "request",
    "credits_estimate",
    "submitted_at",
    "finished_at",
    "stored_path",
    "stored_size",
    "stored_sha256",
    "media",
    "verified",
    "poster_path",
)

POKE_INTERVAL = 5.0  # the sensor's poke_interval, and so every driver's floor between polls
MAX_INTERVAL = 60.0


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def half() -> float:
    return 0.5  # no jitter, and half the backoff's ceiling


@dataclass
class Row:
    """One scripted service, the wait's length, and what every driver must see."""

    service: dict[str, Any]
    faults: list[Reply] = field(default_factory=list)
    timeout: float = 600.0
    first_poll_after: float = 0.0  # the sensor's is 0; rows with another run blocking mode and the trigger only
    polls: list[float] | None = None  # the blocking mode's and the trigger's poll times (s after START)
    status: str = "success"
    error_type: str | None = None

    def service_for(self) -> FakeService:
        return FakeService(FakeClock(), faults=deque(self.faults), **self.service)

    def plan(self) -> WaitPlan:
        return WaitPlan(
            job_id=FakeService().job_id,
            started_at=START,
            deadline=START + timedelta(seconds=self.timeout),
            schedule=PollSchedule(
                first_poll_after=self.first_poll_after, min_interval=POKE_INTERVAL, max_interval=MAX_INTERVAL
            ),
            since="the sensor began waiting",
        )


ROWS = {
    "renders, then succeeds": Row({"finish_after": 31.0}, polls=[0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]),
    "fails": Row({"finish_after": 12.0, "final_status": "FAILED"}, polls=[0.0, 5.0, 10.0, 15.0], status="failed"),
    "a status the contract does not name is still running": Row(
        {"finish_after": 9.0, "pending_status": "WARMING_UP"}, polls=[0.0, 5.0, 10.0]
    ),
    "429 with Retry-After waits at least that long": Row(
        {"finish_after": 0.0},
        faults=[reply(429, {"code": 429, "message": "slow down"}, {"Retry-After": "17"})],
        polls=[0.0, 17.0],
    ),
    "5xx waits for the schedule": Row({"finish_after": 0.0}, faults=[reply(502)] * 3, polls=[0.0, 5.0, 10.0, 15.0]),
    "a dropped connection is polled again after the backoff": Row(
        {"finish_after": 0.0}, faults=[fail(httpx.RemoteProtocolError)] * 2, polls=[0.0, 0.5, 1.5]
    ),
    "not found within the grace is polled again": Row(
        {"known_after": 12.0, "finish_after": 12.0}, polls=[0.0, 5.0, 10.0, 15.0]
    ),
    "not found past the grace is final": Row(
        {"known_after": 10_000.0},
        polls=[0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0],
        status="error",
        error_type="NotFoundError",
    ),
    "a bad key is final at once": Row(
        {},
        faults=[reply(401, {"code": 401, "message": "invalid api key"})],
        polls=[0.0],
        status="error",
        error_type="AuthenticationError",
    ),
    "the deadline ends it, polling once at the deadline": Row(
        {"finish_after": 10_000.0},
        timeout=40.0,
        polls=[0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0],
        status="timeout",
    ),
    # The operator's shape: a first poll near the expected finish, and a queued job's longer wait.
    "the first poll comes near the expected finish": Row(
        {"finish_after": 70.0}, first_poll_after=60.0, polls=[60.0, 68.0, 76.0]
    ),
    "a queued job waits a whole render before its next poll": Row(
        {"finish_after": 150.0, "queued_until": 61.0}, first_poll_after=60.0, polls=[60.0, 120.0, 134.0, 149.0, 165.0]
    ),
}


def blocking(row: Row, *, on_pokes: bool = False) -> tuple[FakeService, JobEvent]:
    """
    Blocking mode; ``on_pokes``: waking only on the sensor's poke grid (every ``POKE_INTERVAL`` from
    START), as a sensor in poke mode can, each sleep lasting until the first poke at or after its end.
    """
    service = row.service_for()
    clock = service.clock

    def sleep_until_a_poke(seconds: float) -> None:
        woken = math.ceil((clock.elapsed() + seconds) / POKE_INTERVAL) * POKE_INTERVAL
        clock.sleep(woken - clock.elapsed())

    sleep = sleep_until_a_poke if on_pokes else clock.sleep
    hook = HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=sleep, rng=half, clock=clock)
    return service, hook.wait_for_job(row.plan())


def triggered(row: Row) -> tuple[FakeService, JobEvent]:
    service = row.service_for()
    clock, plan = service.clock, row.plan()
    record = RenderRecord(
        job_id=plan.job_id, started_at=plan.started_at, deadline=plan.deadline, schedule=plan.schedule
    )
    trigger = HappyHorseJobTrigger(record=record, happyhorse_conn_id="happyhorse_default")
    transport = service.transport()
    trigger._make_hook = lambda: HappyHorseHook(  # type: ignore[method-assign]
        async_transport=transport, async_sleep=clock.async_sleep, rng=half, clock=clock
    )

    async def first_event() -> Any:
        events = [event async for event in trigger.run()]
        assert len(events) == 1
        return events[0]

    return service, JobEvent.model_validate(asyncio.run(first_event()).payload)


def poked(row: Row) -> tuple[FakeService, PokeReturnValue | Exception, int]:
    """The sensor in poke mode, with Airflow's loop: poke, and poke_interval later poke again."""
    service = row.service_for()
    clock = service.clock
    sensor = HappyHorseJobSensor(
        task_id="wait",
        job_id=service.job_id,
        deferrable=False,
        poke_interval=POKE_INTERVAL,
        max_poll_interval=MAX_INTERVAL,
        timeout=row.timeout,
    )
    sensor.hook = HappyHorseHook(transport=service.transport(), resolve=resolve, rng=half, clock=clock)  # type: ignore[misc]
    context = make_context(None)
    pokes = 0
    while pokes < 1000:
        pokes += 1
        try:
            result = sensor.poke(context)
        except Exception as error:
            return service, error, pokes
        if isinstance(result, PokeReturnValue):
            return service, result, pokes
        clock.advance(POKE_INTERVAL)
    raise AssertionError("the sensor never ended")


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_blocking_mode_and_the_trigger_wait_alike(row: Row) -> None:
    service, event = blocking(row)
    assert service.poll_times() == row.polls
    assert (event.status, event.error_type) == (row.status, row.error_type)
    assert event.polls == len(row.polls)
    trigger_service, trigger_event = triggered(row)
    assert trigger_service.poll_times() == row.polls
    assert trigger_event == event
    if row.status == "success":
        assert event.video_url == f"{HOST}/files/{service.job_id}.mp4"


@pytest.mark.parametrize(
    "row",
    [row for row in ROWS.values() if row.first_poll_after == 0],
    ids=[k for k, r in ROWS.items() if r.first_poll_after == 0],
)
def test_the_sensors_poke_waits_alike(row: Row) -> None:
    # The same wait, each poll at the first poke at or after the time the wait names.
    on_pokes, event = blocking(row, on_pokes=True)
    service, outcome, pokes = poked(row)
    assert service.poll_times() == on_pokes.poll_times()
    assert pokes >= len(on_pokes.poll_times())
    if row.status == "success":
        assert isinstance(outcome, PokeReturnValue)
        assert outcome.xcom_value == {  # a sensor knows no request, nor when the job was submitted
            **dict.fromkeys(RESULT_KEYS),
            "job_id": event.job_id,
            "status": event.job_status,
            "video_url": event.video_url,
            "finished_at": event.finished_at,
        }
        return
    assert isinstance(outcome, Exception)
    if row.status == "timeout":
        assert isinstance(outcome, AirflowSensorTimeout)
        assert str(outcome) == str(JobTimeoutError(event.job_id, str(event.deadline)))
        return
    with pytest.raises(type(outcome)) as expected:
        raise_for_event(event)
    assert str(outcome) == str(expected.value)


def said(plan: WaitPlan, service: FakeService) -> list[tuple[int, str]]:
    """Drive the flow itself over the service, collecting what it says."""
    lines: list[tuple[int, str]] = []
    settings = ConnectionSettings(base_url=HOST, api_key=API_KEY)
    flow = wait_flow(
        settings,
        plan,
        clock=service.clock,
        rng=half,
        say=lambda level, message, *args: lines.append((level, message % args)),
    )
    client = httpx.Client(transport=service.transport())
    outcome: Any = None
    try:
        while True:
            action = flow.send(outcome)
            if hasattr(action, "request"):
                try:
                    outcome = client.send(action.request)
                except httpx.TransportError as error:
                    outcome = error
            else:
                service.clock.sleep(action.seconds)
                outcome = None
    except StopIteration:
        return lines


def test_an_unknown_status_is_reported_once_and_news_only() -> None:
    row = ROWS["a status the contract does not name is still running"]
    lines = said(row.plan(), row.service_for())
    warnings = [text for level, text in lines if level == logging.WARNING]
    assert warnings == ["Job n92abc123hh10 reports unknown status 'WARMING_UP'; treating it as still running"]
    # Healthy polls say nothing until the end (the triggerer's thousands of waits stay quiet).
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert "seen by poll 3, 10 s after the sensor began waiting" in lines[-1][1]


def test_a_waiting_worker_says_how_the_job_is_doing_once_a_minute() -> None:
    plan = WaitPlan(
        job_id="n92abc123hh10",
        started_at=START,
        deadline=START + timedelta(minutes=10),
        schedule=PollSchedule(first_poll_after=10.0, min_interval=10.0, max_interval=10.0),
        progress_every=timedelta(minutes=1),
    )
    lines = said(plan, FakeService(FakeClock(), finish_after=400.0))
    told = [text for _, text in lines if "is still IN_PROGRESS" in text]
    assert len(told) == 6  # about 400 s of polls every 10 s: one line a minute, not one per poll
    assert told[0].startswith("Job n92abc123hh10 is still IN_PROGRESS, 60 s after submission (6 polls so far")


def test_transient_errors_are_said_with_their_count_and_the_next_wait() -> None:
    row = ROWS["a dropped connection is polled again after the backoff"]
    lines = said(row.plan(), row.service_for())
    warnings = [text for level, text in lines if level == logging.WARNING]
    assert len(warnings) == 2
    assert "transient error 1, polling again in 0.5 s" in warnings[0]
    assert "transient error 2, polling again in 1.0 s" in warnings[1]

"""Progress a person can read: the render-time estimate said a few times per render, on the fake clock."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.core.flows import Send, Sleep
from airflow_provider_happyhorse.core.progress import RenderEstimate, about
from airflow_provider_happyhorse.core.schedule import PollSchedule, first_poll_for
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.core.wait import WaitPlan, wait_flow
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
from support.clock import START, FakeClock
from support.service import API_KEY, CONN_JSON, HOST, FakeService

# A 5 s std clip with sound: (20 + 3 x 5) x 1.2 = 42 s usually.
REQUEST = VideoRequest(prompt="a horse at dawn", duration=5, sound=True)
JOB = FakeService().job_id


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def test_the_estimate_in_words() -> None:
    estimate = RenderEstimate.of_request(REQUEST, START)
    assert estimate.expected_seconds == 42
    assert estimate.expected_finish == START + timedelta(seconds=42)
    at = {seconds: estimate.describe(START + timedelta(seconds=seconds)) for seconds in (0, 25.2, 41.9, 57, 400)}
    assert at == {
        0: "about 0% by the usual render time (~42 s), expected done in ~42 s",
        25.2: "about 60% by the usual render time (~42 s), expected done in ~17 s",
        41.9: "about 99% by the usual render time (~42 s), expected done in ~1 s",
        57: "past the usual render time (~42 s) by ~15 s",
        400: "past the usual render time (~42 s) by ~6 min",
    }
    assert [about(s) for s in (0.2, 89, 90, 150)] == ["~1 s", "~89 s", "~2 min", "~2 min"]


def test_the_estimate_of_a_request() -> None:
    assert RenderEstimate.of_request(REQUEST, START) == RenderEstimate(START, 42.0)
    pro = VideoRequest(prompt="x", mode="pro", duration=10, sound=False)
    assert RenderEstimate.of_request(pro, START) == RenderEstimate(START, (20 + 30) * 1.5)


def run_wait(service: FakeService, estimate: RenderEstimate | None) -> tuple[list[tuple[float, str]], list[float]]:
    """Drive the wait over the service: what it said (seconds after START, text) and its poll times."""
    plan = WaitPlan(
        job_id=JOB,
        started_at=START,
        deadline=START + timedelta(minutes=10),
        schedule=PollSchedule(first_poll_after=first_poll_for(42.0), min_interval=5.0, max_interval=60.0),
        estimate=estimate,
    )
    lines: list[tuple[float, str]] = []
    flow = wait_flow(
        ConnectionSettings(base_url=HOST, api_key=API_KEY),
        plan,
        clock=service.clock,
        rng=lambda: 0.5,
        say=lambda level, message, *args: lines.append((service.clock.elapsed(), message % args)),
    )
    client = httpx.Client(transport=service.transport())
    outcome: Any = None
    try:
        while True:
            action = flow.send(outcome)
            if isinstance(action, Send):
                outcome = client.send(action.request)
            else:
                assert isinstance(action, Sleep)
                service.clock.sleep(action.seconds)
                outcome = None
    except StopIteration:
        return lines, service.poll_times()


def test_a_render_on_time_is_said_at_a_quarter_half_and_three_quarters_then_its_end() -> None:
    lines, polls = run_wait(FakeService(FakeClock(), finish_after=40.0), RenderEstimate(START, 42.0))
    # Each line on the first whole second at or after 25/50/75% of 42 s (10.5, 21, 31.5 s).
    assert lines[:3] == [
        (11.0, f"Job {JOB}: about 26% by the usual render time (~42 s), expected done in ~31 s"),
        (21.0, f"Job {JOB}: about 50% by the usual render time (~42 s), expected done in ~21 s"),
        (32.0, f"Job {JOB}: about 76% by the usual render time (~42 s), expected done in ~10 s"),
    ]
    assert len(lines) == 4
    assert lines[3][1].startswith(f"Job {JOB} is SUCCESS, seen by poll 1, 43 s after submission")
    # The progress lines move no poll: the same wait without an estimate polls at the same times.
    assert polls == run_wait(FakeService(FakeClock(), finish_after=40.0), None)[1] == [43.0]


def test_an_overdue_render_is_said_at_the_polls_past_1x_and_2x_only() -> None:
    lines, polls = run_wait(FakeService(FakeClock(), finish_after=130.0), RenderEstimate(START, 42.0))
    assert len(polls) > 6  # many polls ...
    overdue = [(at, text) for at, text in lines if "past the usual" in text]
    # ... and two lines: at the first poll past 42 s, and at the first past 84 s.
    assert overdue == [
        (43.0, f"Job {JOB} is still IN_PROGRESS: past the usual render time (~42 s) by ~1 s"),
        (
            min(p for p in polls if p >= 84),
            f"Job {JOB} is still IN_PROGRESS: past the usual render time (~42 s) by "
            f"{about(min(p for p in polls if p >= 84) - 42)}",
        ),
    ]
    assert len(lines) == 3 + 2 + 1  # three before due, two overdue, the end
    assert polls == run_wait(FakeService(FakeClock(), finish_after=130.0), None)[1]


def test_a_wait_that_begins_past_half_way_does_not_repeat_the_lines_it_missed() -> None:
    clock = FakeClock()
    clock.advance(25.0)  # a trigger resumed on another triggerer, 25 s into a 42 s render
    lines, _ = run_wait(FakeService(clock, finish_after=40.0), RenderEstimate(START, 42.0))
    assert [text.split(": ", 1)[1] for _, text in lines[:-1]] == [
        "about 76% by the usual render time (~42 s), expected done in ~10 s"
    ]


def test_no_estimate_says_nothing_while_the_job_is_healthy() -> None:
    lines, _ = run_wait(FakeService(FakeClock(), finish_after=130.0), None)
    assert len(lines) == 1  # only the end


async def test_the_trigger_says_the_estimate_of_the_request_it_carries(capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(FakeClock(), finish_after=40.0)
    trigger = HappyHorseJobTrigger(
        job_id=JOB,
        happyhorse_conn_id="happyhorse_default",
        deadline=(START + timedelta(minutes=10)).isoformat(),
        submitted_at=START.isoformat(),
        first_poll_after=first_poll_for(42.0),
        min_poll_interval=5.0,
        max_poll_interval=60.0,
        result={"job_id": JOB, "status": "IN_PROGRESS", "request": REQUEST.to_body()},
    )
    clock, transport = service.clock, service.transport()
    trigger._make_hook = lambda: HappyHorseHook(  # type: ignore[method-assign]
        "happyhorse_default", async_transport=transport, async_sleep=clock.async_sleep, rng=lambda: 0.5, clock=clock
    )
    assert trigger.plan().estimate == RenderEstimate(START, 42.0)
    [event] = [event async for event in trigger.run()]
    assert event.payload["status"] == "success"
    out = capsys.readouterr().out
    # The line's text, whatever prefix the Airflow version's log format puts before it.
    said = re.findall(r"Job \S+: about \d+% by the usual render time .*? in ~\d+ s", out)
    assert said == [
        f"Job {JOB}: about 26% by the usual render time (~42 s), expected done in ~31 s",
        f"Job {JOB}: about 50% by the usual render time (~42 s), expected done in ~21 s",
        f"Job {JOB}: about 76% by the usual render time (~42 s), expected done in ~10 s",
    ]
    assert clock.sleeps == [11.0, 10.0, 11.0, 11.0]  # three progress wake-ups, then the poll at 43 s

"""The provider's metrics: what each path counts, with which tags, through a fake ``Stats`` that records the calls."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.job_store import JobRecordStore
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
from support.clock import START, FakeClock
from support.context import DictStore, make_context
from support.media import render_mp4
from support.service import API_KEY, CLIP, CONN_JSON, FakeService, reply, resolve

PROMPT = "a horse on a beach at dawn"
RATE_LIMITED = reply(429, {"code": 429, "message": "slow down"}, {"Retry-After": "1"})


@dataclass
class FakeStats:
    """Airflow's ``Stats`` as the provider calls it: every call kept as (kind, name, value, tags, thread)."""

    calls: list[tuple[str, str, Any, dict[str, str], str]] = field(default_factory=list)
    broken: bool = False

    def _record(self, kind: str, name: str, value: Any, tags: dict[str, str] | None) -> None:
        if self.broken:
            raise OSError("the metrics backend is down")
        self.calls.append((kind, name, value, dict(tags or {}), threading.current_thread().name))

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None) -> None:
        self._record("incr", stat, count, tags)

    def timing(self, stat: str, dt: Any, *, tags: dict[str, str] | None = None) -> None:
        self._record("timing", stat, dt, tags)

    def counted(self, name: str, **tags: str) -> float:
        """The sum a counter reached, over the calls whose tags include ``tags``."""
        return sum(
            value
            for kind, called, value, given, _ in self.calls
            if kind == "incr" and called == name and tags.items() <= given.items()
        )

    def names(self) -> set[str]:
        return {name for _, name, _, _, _ in self.calls}


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> FakeStats:
    fake = FakeStats()
    monkeypatch.setattr(metrics, "Stats", fake)
    monkeypatch.setattr(metrics, "_ready_in_process", None)
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    return fake


def blocking_operator(service: FakeService, tmp_path: Path, **kwargs: Any) -> GenerateVideoOperator:
    """Blocking mode on the fake clock: submit, wait, download, verify and store in one execute()."""
    params: dict[str, Any] = {
        "task_id": "video",
        "prompt": PROMPT,
        "deferrable": False,
        "output_path": str(tmp_path / "a.mp4"),
    }
    params.update(kwargs)
    operator = GenerateVideoOperator(**params)
    clock = service.clock
    operator.hook = HappyHorseHook(  # type: ignore[misc]
        transport=service.transport(), resolve=resolve, sleep=clock.sleep, rng=lambda: 0.5, clock=clock
    )
    return operator


def test_a_stored_render_counts_its_submission_polls_429_download_and_clip(stats: FakeStats, tmp_path: Path) -> None:
    # The clock starts now: the operator stamps its submission with the wall clock.
    service = FakeService(FakeClock(datetime.now(UTC)), finish_after=150.0)
    service.faults.append(RATE_LIMITED)  # the submission is answered 429 once, then taken
    result = blocking_operator(service, tmp_path, mode="pro", duration=5, sound=True).execute(make_context(DictStore()))
    assert result["stored_size"] == len(CLIP)

    assert stats.counted(metrics.RATE_LIMITED, endpoint="generate") == 1
    assert stats.counted(metrics.RATE_LIMITED) == 1
    assert stats.counted(metrics.SUBMISSIONS, outcome="accepted", mode="pro", conn_id="happyhorse_default") == 1
    assert stats.counted(metrics.SUBMISSIONS) == 1
    assert stats.counted(metrics.CREDITS_ESTIMATED, mode="pro") == 80 * 5  # the price list: 80 credits/s, pro + sound
    assert stats.counted(metrics.WAITS_STARTED, where="worker") == 1
    # Every status request of the wait was one poll: the last found the job final, the others running.
    assert stats.counted(metrics.POLLS) == service.status_calls > 1
    assert stats.counted(metrics.POLLS, outcome="final") == 1
    assert stats.counted(metrics.POLLS, outcome="running") == service.status_calls - 1
    assert stats.counted(metrics.CLIPS_VERIFIED, outcome="match") == 1
    assert stats.counted(metrics.CLIPS_STORED, verify_clip="strict") == 1
    assert stats.counted(metrics.DOWNLOAD_BYTES) == len(CLIP) == (tmp_path / "a.mp4").stat().st_size
    [timing] = [call for call in stats.calls if call[0] == "timing"]
    assert timing[1] == metrics.DOWNLOAD_DURATION
    assert isinstance(timing[2], timedelta)
    assert stats.counted(metrics.REFUSALS) == stats.counted(metrics.CLIPS_REJECTED) == 0
    # Tags never carry the key, the prompt or where the clip went.
    for _, _, _, tags, _ in stats.calls:
        for value in tags.values():
            assert API_KEY not in value
            assert PROMPT not in value
            assert str(tmp_path) not in value


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"duration": 99}, "validation"),
        ({"max_credits": 10}, "budget"),
        ({"verify_clip": "sometimes"}, "setting"),
        ({"happyhorse_conn_id": "happyhorse_typo"}, "connection"),
        ({"output_path": "/proc/nope/a.mp4"}, "destination"),
    ],
)
def test_each_refusal_before_paying_is_counted_by_its_reason(
    stats: FakeStats, tmp_path: Path, kwargs: dict[str, Any], reason: str
) -> None:
    service = FakeService(FakeClock())
    operator = blocking_operator(service, tmp_path, **kwargs)
    if "happyhorse_conn_id" in kwargs:
        operator.hook = HappyHorseHook("happyhorse_typo", transport=service.transport())  # type: ignore[misc]
    with pytest.raises(AirflowFailException):
        operator.execute(make_context(DictStore()))
    assert service.requests == []
    assert [(name, tags) for _, name, _, tags, _ in stats.calls] == [
        (metrics.REFUSALS, {"reason": reason, "conn_id": kwargs.get("happyhorse_conn_id", "happyhorse_default")})
    ]


def test_if_exists_fail_and_an_unknown_earlier_outcome_are_refusals(stats: FakeStats, tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"someone else's file")
    service = FakeService(FakeClock())
    with pytest.raises(AirflowFailException):
        blocking_operator(service, tmp_path, if_exists="fail").execute(make_context(DictStore()))
    store = DictStore()
    request = VideoRequest(prompt=PROMPT)
    JobRecordStore(store).save(RenderRecord.submitting(request, START))
    with pytest.raises(AirflowFailException):
        blocking_operator(service, tmp_path, output_path=None).execute(make_context(store))
    assert service.posts == 0
    assert stats.counted(metrics.REFUSALS, reason="if_exists") == 1
    assert stats.counted(metrics.REFUSALS, reason="pending") == 1
    assert stats.counted(metrics.REFUSALS) == 2


def test_a_later_try_counts_a_reattach_not_a_submission(stats: FakeStats, tmp_path: Path) -> None:
    service = FakeService(FakeClock(), finish_after=120.0)
    store = DictStore()
    operator = blocking_operator(service, tmp_path, output_path=None, deferrable=True)
    with pytest.raises(TaskDeferred):
        operator.execute(make_context(store))
    with pytest.raises(TaskDeferred):
        blocking_operator(service, tmp_path, output_path=None, deferrable=True).execute(make_context(store))
    assert service.posts == 1
    assert stats.counted(metrics.SUBMISSIONS) == 1
    assert stats.counted(metrics.REATTACHES, outcome="pending", mode="std", conn_id="happyhorse_default") == 1


def test_a_submission_that_created_nothing_is_counted_refused_without_credits(stats: FakeStats, tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    service.faults.append(reply(400, {"code": 400, "message": "prompt rejected"}))
    with pytest.raises(AirflowException):
        blocking_operator(service, tmp_path).execute(make_context(DictStore()))
    assert stats.counted(metrics.SUBMISSIONS, outcome="refused") == 1
    assert stats.counted(metrics.SUBMISSIONS) == 1
    assert metrics.CREDITS_ESTIMATED not in stats.names()


@pytest.mark.parametrize(
    ("verify_clip", "fails", "verified", "stored", "rejected"),
    [
        ("strict", True, {"mismatch": 1}, 0, {"mismatch": 1}),
        ("warn", False, {"mismatch": 1}, 1, {}),
        ("off", False, {}, 1, {}),
    ],
)
def test_a_clip_that_does_not_match_is_verified_then_rejected_or_kept(
    stats: FakeStats,
    tmp_path: Path,
    verify_clip: str,
    fails: bool,
    verified: dict[str, int],
    stored: int,
    rejected: dict[str, int],
) -> None:
    service = FakeService(FakeClock(), clip=render_mp4(3, 160, 90, True))  # 3 s where 5 s were asked for
    operator = blocking_operator(service, tmp_path, verify_clip=verify_clip)
    if fails:
        with pytest.raises(AirflowFailException):
            operator.execute(make_context(DictStore()))
    else:
        operator.execute(make_context(DictStore()))
    outcomes = Counter(
        {tags["outcome"]: value for _, name, value, tags, _ in stats.calls if name == metrics.CLIPS_VERIFIED}
    )
    assert outcomes == Counter(verified)
    assert stats.counted(metrics.CLIPS_STORED, verify_clip=verify_clip) == stored
    reasons = Counter(
        {tags["reason"]: value for _, name, value, tags, _ in stats.calls if name == metrics.CLIPS_REJECTED}
    )
    assert reasons == Counter(rejected)


def test_a_download_refused_by_the_egress_rule_is_a_refusal(stats: FakeStats, tmp_path: Path) -> None:
    service = FakeService(FakeClock(), finish_after=0.0)
    service.file_faults.append(reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}))
    with pytest.raises(AirflowFailException):
        blocking_operator(service, tmp_path).execute(make_context(DictStore()))
    assert stats.counted(metrics.REFUSALS, reason="egress", conn_id="happyhorse_default") == 1
    assert metrics.CLIPS_STORED not in stats.names()
    assert metrics.DOWNLOAD_BYTES not in stats.names()


def test_a_body_that_is_not_a_video_is_rejected_as_invalid(stats: FakeStats, tmp_path: Path) -> None:
    service = FakeService(FakeClock(), finish_after=0.0, clip=b"<html>not a video</html>")
    with pytest.raises(AirflowException):
        blocking_operator(service, tmp_path).execute(make_context(DictStore()))
    assert stats.counted(metrics.CLIPS_REJECTED, reason="invalid") == 1
    assert metrics.CLIPS_STORED not in stats.names()


def make_trigger(service: FakeService) -> HappyHorseJobTrigger:
    record = RenderRecord(
        job_id=service.job_id,
        started_at=START,
        deadline=START + timedelta(minutes=10),
        schedule=PollSchedule(first_poll_after=60.0, min_interval=5.0, max_interval=60.0),
    )
    trigger = HappyHorseJobTrigger(record=record, happyhorse_conn_id="happyhorse_default")
    clock = service.clock
    transport = service.transport()
    trigger._make_hook = lambda: HappyHorseHook(  # type: ignore[method-assign]
        "happyhorse_default", async_transport=transport, async_sleep=clock.async_sleep, rng=lambda: 0.5, clock=clock
    )
    return trigger


async def test_the_triggers_polls_and_429s_are_counted_and_its_first_metric_is_sent_off_the_loop(
    stats: FakeStats,
) -> None:
    loop_thread = threading.current_thread().name
    service = FakeService(FakeClock(), finish_after=70.0)
    service.faults.append(RATE_LIMITED)  # the first poll
    [event] = [event async for event in make_trigger(service).run()]
    assert event.payload["status"] == "success"
    assert stats.counted(metrics.RATE_LIMITED, endpoint="status") == 1
    assert stats.counted(metrics.POLLS, outcome="transient_error") == 1
    assert stats.counted(metrics.POLLS, outcome="final") == 1
    assert stats.counted(metrics.POLLS) == service.status_calls
    # The first metric of the process makes the backend (a DNS lookup for StatsD): not on the event loop.
    first = stats.calls[0]
    assert first[1] == metrics.WAITS_STARTED
    assert first[3] == {"where": "triggerer", "conn_id": "happyhorse_default"}
    assert first[4] != loop_thread
    assert all(thread == loop_thread for *_, thread in stats.calls[1:])
    # A second trigger in the same process sends straight from the loop.
    [event] = [event async for event in make_trigger(FakeService(FakeClock(), finish_after=0.0)).run()]
    assert stats.counted(metrics.WAITS_STARTED, where="triggerer") == 2
    assert all(thread == loop_thread for *_, thread in stats.calls[1:])


def test_a_metrics_backend_that_fails_never_fails_the_render(
    stats: FakeStats, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stats.broken = True
    result = blocking_operator(FakeService(FakeClock()), tmp_path).execute(make_context(DictStore()))
    assert result["stored_size"] == len(CLIP)
    assert "Could not emit the metric happyhorse.submissions: the metrics backend is down" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"job_id": "../etc/passwd"}, "validation"),
        ({"verify_clip": "sometimes"}, "setting"),
        ({"output_path": "/proc/nope/a.mp4"}, "destination"),
    ],
)
def test_the_sensors_refusals_are_counted_by_reason(stats: FakeStats, kwargs: dict[str, Any], reason: str) -> None:
    from airflow_provider_happyhorse.sensors.happyhorse import HappyHorseJobSensor

    service = FakeService(FakeClock())
    params: dict[str, Any] = {"task_id": "wait", "job_id": service.job_id, **kwargs}
    sensor = HappyHorseJobSensor(**params)
    sensor.hook = HappyHorseHook(transport=service.transport(), resolve=resolve, clock=service.clock)  # type: ignore[misc]
    with pytest.raises(AirflowFailException):
        sensor.execute(make_context(None))
    assert service.requests == []
    assert [(name, tags) for _, name, _, tags, _ in stats.calls] == [
        (metrics.REFUSALS, {"reason": reason, "conn_id": "happyhorse_default"})
    ]

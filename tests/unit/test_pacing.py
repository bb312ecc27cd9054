"""
The account's query limit (issue 23, item 5): ``core.pacing.QueryBucket`` with a fake clock, the connection
extra, and the hook's polls sharing one bucket per connection per event loop (and per process on the sync
path). Each burst is checked against an independent model of the service's limit: DashScope's bucket of
one second's worth (20 queries, 20 a second), as the emulator enforces it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.core.dialects import DASHSCOPE, HAPPYHORSE
from airflow_provider_happyhorse.core.pacing import QueryBucket
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.exceptions import ConfigurationError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, query_buckets
from airflow_provider_happyhorse.models import VideoRequest
from support.clock import FakeClock
from support.dashscope import CREATE_PATH, DS_HOST, TASK_ID, ds_task
from support.service import API_KEY, BASE_URL, ConnectionSetter, FakeService, ok_job

SERVICE_RATE = 20.0  # DashScope: 20 task queries a second per account


def throttled(send_times: list[float], rate: float = SERVICE_RATE) -> int:
    """How many of these queries the service answers 429: its bucket holds one second's worth, full at first."""
    tokens, last, refused = rate, 0.0, 0
    for at in sorted(send_times):
        tokens = min(rate, tokens + (at - last) * rate)
        last = at
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            refused += 1
    return refused


def most_in_one_second(send_times: list[float]) -> int:
    times = sorted(send_times)
    return max(sum(1 for later in times[index:] if later < at + 1.0) for index, at in enumerate(times))


# -- the bucket -----------------------------------------------------------------------------------------------


def test_a_burst_is_spread_at_the_rate_in_the_order_it_came() -> None:
    bucket = QueryBucket(rate=20.0, now=100.0)
    waits = [bucket.reserve(100.0) for _ in range(100)]
    assert waits == pytest.approx([index / 20.0 for index in range(100)])
    assert most_in_one_second([100.0 + wait for wait in waits]) == 20
    # Unpaced, the same burst goes out at once and the service refuses all but its bucket's worth.
    assert throttled([0.0] * 100) == 80
    assert throttled(waits) == 0


def test_after_a_quiet_spell_one_query_goes_at_once_and_the_next_a_token_later() -> None:
    bucket = QueryBucket(rate=20.0, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.05)
    # An hour of silence keeps one token, not 72,000: the service's slack is left for jitter.
    assert [bucket.reserve(3600.0) for _ in range(3)] == pytest.approx([0.0, 0.05, 0.10])
    assert bucket.reserve(3600.5) == 0.0  # the promised tokens were paid back by then


def test_polls_due_at_random_times_never_pass_the_service_limit_even_with_half_a_second_of_jitter() -> None:
    import random

    rng = random.Random(23)
    bucket = QueryBucket(rate=20.0, now=0.0)
    due = sorted(rng.uniform(0.0, 60.0) for _ in range(3000))  # 50 a second wanted, for a minute
    sent = [at + bucket.reserve(at) for at in due]
    assert throttled(sent) == 0
    # What the network does to them on the way: each arrives up to 0.5 s late, in any order.
    assert throttled([at + rng.uniform(0.0, 0.5) for at in sent]) == 0
    assert throttled(due) > 1000  # and what the service would have refused without the bucket


def test_a_cancelled_waiter_gives_its_token_back() -> None:
    bucket = QueryBucket(rate=10.0, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    bucket.give_back(0.0)
    assert bucket.reserve(0.0) == pytest.approx(0.2)
    bucket.give_back(5.0)
    assert bucket.tokens == 1.0  # never above the burst


def test_a_clock_stepping_back_adds_no_tokens() -> None:
    bucket = QueryBucket(rate=20.0, now=10.0)
    bucket.reserve(10.0)
    assert bucket.reserve(5.0) == pytest.approx(0.05)


def test_a_bucket_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="rate above 0"):
        QueryBucket(rate=0.0, now=0.0)


# -- the connection ---------------------------------------------------------------------------------------------


class _Conn:
    conn_id = "happyhorse_default"
    password = API_KEY
    schema = None

    def __init__(self, host: str) -> None:
        self.host = host


@pytest.mark.parametrize(
    ("host", "extra", "expected"),
    [
        (DS_HOST, {}, 20.0),  # DashScope's documented query limit
        (BASE_URL, {}, None),  # happyhorse.app documents none: 429 with Retry-After only
        (DS_HOST, {"max_queries_per_second": 5}, 5.0),
        (DS_HOST, {"max_queries_per_second": "7.5"}, 7.5),
        (BASE_URL, {"max_queries_per_second": 10}, 10.0),
        (DS_HOST, {"max_queries_per_second": 0}, None),  # pacing off
        (DS_HOST, {"max_queries_per_second": None}, 20.0),
    ],
)
def test_the_limit_comes_from_the_extra_else_the_dialect(host: str, extra: dict[str, Any], expected: Any) -> None:
    assert ConnectionSettings.from_connection(_Conn(host), extra).max_queries_per_second == expected
    assert (DASHSCOPE.query_limit, HAPPYHORSE.query_limit) == (20.0, None)


@pytest.mark.parametrize("value", [-1, "fast", True, float("inf"), [20]])
def test_an_unusable_limit_is_refused_with_the_way_out(value: Any) -> None:
    with pytest.raises(ConfigurationError) as refused:
        ConnectionSettings.from_connection(_Conn(DS_HOST), {"max_queries_per_second": value})
    message = str(refused.value)
    assert f"max_queries_per_second {value!r}" in message
    assert "0 turns pacing off" in message
    assert "remove the key" in message


# -- the async path: every trigger of a triggerer shares one bucket per connection ----------------------------


class _AtOneInstant:
    """
    Every poll becomes due at the same instant (the bucket's clock stands still); ``sleep`` notes how long each
    task waited, and the service when each query was sent: the wait before it, as nothing else sleeps.
    """

    def __init__(self) -> None:
        self.waited: dict[asyncio.Task[Any] | None, float] = {}
        self.sent: list[tuple[str, float]] = []

    async def sleep(self, seconds: float) -> None:
        self.waited[asyncio.current_task()] = self.waited.get(asyncio.current_task(), 0.0) + seconds

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, self.waited.get(asyncio.current_task(), 0.0)))
        if request.method == "POST":
            return httpx.Response(200, json=ds_task("PENDING"))
        return httpx.Response(200, json=ds_task("RUNNING"))

    def hook(self) -> HappyHorseHook:
        # A hook per trigger, as the triggerer makes them; the same transport stands for the loop's shared one.
        return HappyHorseHook(async_transport=self.transport, async_sleep=self.sleep, monotonic=lambda: 50.0)

    @property
    def transport(self) -> httpx.MockTransport:
        if not hasattr(self, "_transport"):
            self._transport = httpx.MockTransport(self.handle)
        return self._transport


async def test_polls_of_many_triggers_share_the_connections_bucket(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = _AtOneInstant()
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(60)))
    times = [at for method, at in service.sent]
    assert len(times) == 60
    assert sorted(times) == pytest.approx([index / 20.0 for index in range(60)])
    assert most_in_one_second(times) == 20
    assert throttled(times) == 0


async def test_the_extra_sets_the_rate_and_happyhorse_app_is_not_paced(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST, extra={"max_queries_per_second": 4})
    service = _AtOneInstant()
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(8)))
    assert sorted(at for _, at in service.sent) == pytest.approx([index / 4.0 for index in range(8)])

    connection(conn_id="happyhorse_app", host=BASE_URL)
    app = FakeService(then=ok_job())
    hooks = [
        HappyHorseHook("happyhorse_app", async_transport=app.transport(), async_sleep=service.sleep) for _ in range(30)
    ]
    before = dict(service.waited)
    await asyncio.gather(*(hook.aget_job("job-1") for hook in hooks))
    assert app.status_calls == 30
    assert service.waited == before  # nothing waited


async def test_a_submission_is_not_kept_waiting_behind_polls(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = _AtOneInstant()
    # 40 polls at one instant: the bucket's clock stands still, so two seconds' worth of tokens stay promised.
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(40)))
    await service.hook().asubmit_job(VideoRequest(prompt="a horse"))
    await service.hook().aget_job(TASK_ID)
    assert service.sent[40:] == [("POST", 0.0), ("GET", pytest.approx(2.0))]  # a poll now waits 2 s; it did not


async def test_each_event_loop_and_connection_has_its_own_bucket(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    connection(host=DS_HOST, conn_id="other_account")
    service = _AtOneInstant()
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(3)))
    other = HappyHorseHook(
        "other_account", async_transport=service.transport, async_sleep=service.sleep, monotonic=lambda: 50.0
    )
    await other.aget_job(TASK_ID)
    assert [at for _, at in service.sent] == pytest.approx([0.0, 0.05, 0.10, 0.0])


# -- the sync path: one bucket per connection in the process ------------------------------------------------------


def test_blocking_polls_wait_for_the_process_bucket(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    query_buckets.clear()
    clock = FakeClock()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=ds_task("RUNNING")))
    hooks = [
        HappyHorseHook(transport=transport, sleep=clock.sleep, clock=clock, monotonic=clock.monotonic) for _ in range(3)
    ]
    for hook in hooks:  # three threads' polls at one instant, say
        hook.get_job(TASK_ID)
    assert clock.sleeps == pytest.approx([0.05, 0.05])  # each waits for the token after the one before


def _blocking_wait(extra: dict[str, Any], connection: ConnectionSetter) -> list[float]:
    connection(host=DS_HOST, extra=extra)
    query_buckets.clear()
    clock = FakeClock()
    statuses = ["RUNNING", "RUNNING", "SUCCEEDED"]

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path != CREATE_PATH
        return httpx.Response(200, json=ds_task(statuses.pop(0)))

    hook = HappyHorseHook(
        transport=httpx.MockTransport(handle),
        sleep=clock.sleep,
        clock=clock,
        monotonic=clock.monotonic,
        rng=lambda: 0.5,
    )
    event = hook.wait_for_job(
        WaitPlan(
            job_id=TASK_ID,
            started_at=clock.now,
            deadline=clock.now + timedelta(minutes=10),
            schedule=PollSchedule(first_poll_after=1, min_interval=1, max_interval=2),
        )
    )
    assert event.status == "success"
    return clock.sleeps


def test_a_blocking_wait_under_the_limit_polls_as_scheduled(connection: ConnectionSetter) -> None:
    paced = _blocking_wait({}, connection)
    assert paced == _blocking_wait({"max_queries_per_second": 0}, connection)  # the schedule's waits, nothing added
    assert len(paced) == 3


def test_a_blocking_wait_over_the_limit_waits_for_its_token(connection: ConnectionSetter) -> None:
    unpaced = _blocking_wait({"max_queries_per_second": 0}, connection)
    paced = _blocking_wait({"max_queries_per_second": 0.1}, connection)  # a token every 10 s
    assert len(paced) > len(unpaced)
    assert sum(paced) >= 20.0  # three polls: the second and third each at least 10 s after the one before

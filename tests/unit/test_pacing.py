"""
The account's query limit (issue 23, item 5): ``core.pacing.QueryBucket`` with a fake clock (who goes first
under the limit, and the sync path's reservation), the allowance each poll of a wait carries, the connection
extra, and the hook's polls sharing one bucket per connection per event loop (and per process on the sync
path). Each burst is checked against an independent model of the service's limit: DashScope's bucket of
one second's worth (20 queries, 20 a second), as the emulator enforces it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.core.dialects import DASHSCOPE, HAPPYHORSE
from airflow_provider_happyhorse.core.flows import Sleep
from airflow_provider_happyhorse.core.pacing import QueryBucket, Ticket
from airflow_provider_happyhorse.core.progress import RenderEstimate
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.core.wait import WaitPlan, wait_flow
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


# -- the sync path's reservation: first come, first served ------------------------------------------------------


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


def test_a_clock_stepping_back_adds_no_tokens() -> None:
    bucket = QueryBucket(rate=20.0, now=10.0)
    bucket.reserve(10.0)
    assert bucket.reserve(5.0) == pytest.approx(0.05)


def test_a_bucket_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="rate above 0"):
        QueryBucket(rate=0.0, now=0.0)


# -- the event loop's queue: who goes first ------------------------------------------------------------------


@dataclass
class Poll:
    """A poll falling due at ``due`` whose job's allowance ends at ``detect_by``; ``gone_at``: cancelled then."""

    name: str
    due: float
    detect_by: float | None = None
    gone_at: float | None = None


def serve(bucket: QueryBucket, polls: list[Poll]) -> list[tuple[str, float]]:
    """
    Drive the bucket as the hook does, with time jumping from event to event: each poll joins when due, waiters
    leave when cancelled, and between them the bucket is asked again whenever its next token comes. Returns who
    was sent when, in order.
    """
    arrivals = sorted(polls, key=lambda poll: poll.due)
    leaving = sorted((poll for poll in polls if poll.gone_at is not None), key=lambda poll: poll.gone_at or 0.0)
    tickets: dict[str, Ticket] = {}
    names: dict[int, str] = {}
    sent: list[tuple[str, float]] = []
    now = bucket.now
    while arrivals or bucket.waiting:
        token = now + bucket.until_token(now) if bucket.waiting else math.inf
        now = min(token, arrivals[0].due if arrivals else math.inf, leaving[0].gone_at if leaving else math.inf)
        while leaving and (leaving[0].gone_at or 0.0) <= now:
            gone = leaving.pop(0)
            if gone.name in tickets and not tickets[gone.name].granted:  # once sent, a cancel comes too late
                bucket.leave(tickets[gone.name], now)
        while arrivals and arrivals[0].due <= now:
            poll = arrivals.pop(0)
            ticket = tickets[poll.name] = bucket.join(now, poll.detect_by)
            names[ticket.number] = poll.name
        sent += [(names[ticket.number], now) for ticket in bucket.grant(now)]
    return sent


def test_the_latest_arrival_with_the_soonest_deadline_goes_first() -> None:
    bucket = QueryBucket(rate=10.0, now=0.0)
    sent = serve(
        bucket,
        [
            Poll("first", 0.0, detect_by=50.0),  # finds the token: goes at once
            Poll("a", 0.01, detect_by=5.0),
            Poll("b", 0.02, detect_by=4.0),
            Poll("c", 0.03, detect_by=1.0),
        ],
    )
    assert sent == [("first", 0.0), ("c", pytest.approx(0.1)), ("b", pytest.approx(0.2)), ("a", pytest.approx(0.3))]


def test_a_poll_whose_allowance_ended_goes_after_all_the_others() -> None:
    bucket = QueryBucket(rate=10.0, now=0.0)
    sent = serve(
        bucket,
        [
            Poll("first", 0.0, detect_by=50.0),
            Poll("lost", 0.01, detect_by=0.05),  # the soonest deadline, but over before the next token (0.1)
            Poll("later", 0.02, detect_by=20.0),
            Poll("soon", 0.03, detect_by=10.0),
            Poll("lost before it came", 0.04, detect_by=-30.0),
        ],
    )
    assert [name for name, _ in sent] == ["first", "soon", "later", "lost", "lost before it came"]


def test_a_query_outside_a_wait_goes_ahead_of_the_waits_polls() -> None:
    bucket = QueryBucket(rate=1.0, now=0.0)
    sent = serve(
        bucket,
        [
            Poll("first", 0.0, detect_by=50.0),
            Poll("lost", 0.01, detect_by=0.5),  # over before the next token (1.0)
            Poll("a kill's status read", 0.02),  # no allowance: somebody awaits it now
            Poll("on time", 0.03, detect_by=20.0),
            Poll("another read", 0.5),
        ],
    )
    assert [name for name, _ in sent] == ["first", "a kill's status read", "another read", "on time", "lost"]


def test_a_poll_due_when_a_token_is_there_goes_at_once_whatever_its_deadline() -> None:
    bucket = QueryBucket(rate=20.0, now=0.0)
    polls = [Poll(f"poll {index}", index * 0.25, detect_by=-100.0 if index % 2 else None) for index in range(40)]
    assert serve(bucket, polls) == [(poll.name, poll.due) for poll in polls]  # 4 a second: none waits


def test_a_lost_poll_waits_at_most_the_wait_limit_behind_polls_that_keep_coming() -> None:
    bucket = QueryBucket(rate=1.0, now=0.0, wait_limit=5.0)
    # Two on-time polls a second against one token a second: the queue of on-time polls never empties.
    stream = [Poll(f"on time {index}", index * 0.5, detect_by=index * 0.5 + 100.0) for index in range(40)]
    sent = dict(serve(bucket, [*stream, Poll("lost", 0.1, detect_by=0.0)]))
    assert sent["lost"] == pytest.approx(6.0)  # the first token after it has waited 5 s (tokens at 0, 1, 2, ...)
    # Without the limit it goes only once the stream has dried up and the queue is served.
    unbounded = dict(serve(QueryBucket(rate=1.0, now=0.0, wait_limit=math.inf), [*stream, Poll("lost", 0.1, 0.0)]))
    assert unbounded["lost"] == pytest.approx(40.0)


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    bucket = QueryBucket(rate=10.0, now=0.0)
    sent = serve(
        bucket,
        [
            Poll("first", 0.0),
            Poll("next", 0.01, detect_by=1.0, gone_at=0.05),  # would go at 0.1
            Poll("after", 0.02, detect_by=2.0),
            Poll("last", 0.03, detect_by=3.0),
        ],
    )
    assert sent == [("first", 0.0), ("after", pytest.approx(0.1)), ("last", pytest.approx(0.2))]
    assert bucket.waiting == 0


def test_a_granted_poll_cancelled_before_sending_gives_its_token_back() -> None:
    bucket = QueryBucket(rate=10.0, now=0.0)
    first, second = bucket.join(0.0, 1.0), bucket.join(0.0, 2.0)
    assert bucket.grant(0.0) == [first]
    assert bucket.until_token(0.0) == pytest.approx(0.1)
    bucket.leave(first, 0.0)  # its waiter was cancelled before it sent the query
    assert bucket.grant(0.0) == [second]  # the token it gave back goes at once
    bucket.leave(second, 0.0)
    bucket.leave(second, 5.0)
    assert bucket.tokens == 1.0  # never above the burst, and a ticket gives back once


def test_over_a_long_run_the_rate_is_never_passed_every_wait_is_bounded_and_more_are_seen_in_time() -> None:
    import random

    rng = random.Random(5)
    rate, wait_limit = 20.0, 30.0
    polls = []
    for index in range(6000):  # 30 a second for 200 s, then the queue drains
        due = rng.uniform(0.0, 200.0)
        cancelled = due + rng.uniform(0.0, 10.0) if rng.random() < 0.05 else None
        polls.append(Poll(str(index), due, detect_by=due + rng.uniform(-1.0, 8.0), gone_at=cancelled))
    bucket = QueryBucket(rate=rate, now=0.0, wait_limit=wait_limit)
    # How many waited before each (the bound's second part), as the queue stood when it came.
    ahead: dict[int, int] = {}
    join = bucket.join

    def counting_join(now: float, detect_by: float | None = None) -> Ticket:
        ticket = join(now, detect_by)
        ahead[ticket.number] = bucket.waiting - 1
        return ticket

    bucket.join = counting_join  # type: ignore[method-assign]
    sent = serve(bucket, polls)
    by_name = {poll.name: poll for poll in polls}
    # Tickets are numbered in the order the polls joined, which is the order they fell due.
    ahead_of = {poll.name: ahead[number] for number, poll in enumerate(sorted(polls, key=lambda poll: poll.due))}
    times = [at for _, at in sent]
    assert throttled(times) == 0
    assert most_in_one_second(times) <= rate
    assert times == sorted(times)
    for name, at in sent:
        poll = by_name[name]
        assert at >= poll.due
        assert poll.gone_at is None or at <= poll.gone_at  # a cancelled poll is never sent after it left
        assert at - poll.due <= wait_limit + (ahead_of[name] + 1) / rate + 1e-9
    gone = {poll.name for poll in polls if poll.gone_at is not None} - {name for name, _ in sent}
    assert len(sent) + len(gone) == len(polls)
    # Soonest deadline first sees more polls in time than first come, first served (the sync path's order).
    in_time = sum(at <= (by_name[name].detect_by or 0.0) for name, at in sent)
    fifo = QueryBucket(rate=rate, now=0.0)
    fifo_sent = [(poll, poll.due + fifo.reserve(poll.due)) for poll in sorted(polls, key=lambda poll: poll.due)]
    fifo_in_time = sum(at <= (poll.detect_by or 0.0) for poll, at in fifo_sent if poll.name in dict(sent))
    assert in_time > 2 * fifo_in_time


def test_a_bucket_needs_a_wait_limit_of_zero_or_more() -> None:
    with pytest.raises(ValueError, match="wait limit of at least 0"):
        QueryBucket(rate=1.0, now=0.0, wait_limit=-1.0)


# -- the wait's allowance, which sets each poll's place ------------------------------------------------------------


def test_each_poll_of_a_wait_carries_the_end_of_its_jobs_allowance() -> None:
    clock = FakeClock()
    started = clock.now
    schedule = PollSchedule(first_poll_after=55.0, min_interval=2.0, max_interval=120.0)
    estimate = RenderEstimate(started, expected_seconds=50.0)
    plan = WaitPlan(job_id=TASK_ID, started_at=started, deadline=started + timedelta(hours=1), schedule=schedule)
    settings = ConnectionSettings.from_connection(_Conn(DS_HOST), {})
    statuses = ["RUNNING", "RUNNING", "SUCCEEDED"]
    for with_estimate in (True, False):
        clock.now, statuses[:] = started, ["RUNNING", "RUNNING", "SUCCEEDED"]
        flow = wait_flow(
            settings,
            dataclasses.replace(plan, estimate=estimate if with_estimate else None),
            clock=clock,
            rng=lambda: 0.5,
            say=lambda *args: None,
        )
        polls: list[tuple[float, float]] = []  # (sent, detect_by), seconds after the start
        answer: httpx.Response | None = None
        while statuses:
            action = flow.send(answer)
            answer = None
            if isinstance(action, Sleep):
                clock.sleep(action.seconds)
            else:
                assert action.query
                assert action.detect_by is not None
                polls.append((clock.elapsed(), (action.detect_by - started).total_seconds()))
                answer = httpx.Response(200, json=ds_task(statuses.pop(0)), request=action.request)
        with pytest.raises(StopIteration):
            flow.send(answer)  # the wait ends on the last answer
        (first, first_by), (second, second_by), (third, third_by) = polls
        assert (first, second, third) == (55.0, 62.0, 70.0)  # the schedule's (2 s + 10% of the time so far)
        if with_estimate:
            # Expected done at 50 s: the allowance, 2 s + 10% of 50 s, ends at 57 s. Seen running at 55 s and
            # 62 s, it finishes after: 55 + 2 + 5.5, then 62 + 2 + 6.2.
            assert (first_by, second_by, third_by) == pytest.approx((57.0, 62.5, 70.2))
        else:
            # No model: taken as finishing when the poll falls due.
            assert (first_by, second_by, third_by) == pytest.approx((55.0 + 7.5, 62.0 + 8.2, 70.0 + 9.0))


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


class _PacedService:
    """
    The service and the time of the async tests. The fake clock moves only when a poll waiting for a token
    sleeps, and only once every task woken before has run (and so sent its query): the one waiter keeping time is
    then the only one asleep, which ``most_asleep`` checks. ``sent``: (method, task id, seconds after the start).
    """

    def __init__(self, finished: bool = False) -> None:
        self.clock = FakeClock()
        self.finished = finished
        self.sent: list[tuple[str, str, float]] = []
        self.asleep = self.most_asleep = 0
        self.transport = httpx.MockTransport(self.handle)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        self.asleep += 1
        self.most_asleep = max(self.most_asleep, self.asleep)
        try:
            for _ in range(4):
                await asyncio.sleep(0)
            self.clock.sleep(seconds)
        finally:
            self.asleep -= 1

    def handle(self, request: httpx.Request) -> httpx.Response:
        task_id = request.url.path.rsplit("/", 1)[-1]
        self.sent.append((request.method, task_id, self.clock.elapsed()))
        if request.method == "POST":
            return httpx.Response(200, json=ds_task("PENDING"))
        return httpx.Response(200, json=ds_task("SUCCEEDED" if self.finished else "RUNNING", task_id=task_id))

    def hook(self, conn_id: str = "happyhorse_default") -> HappyHorseHook:
        # A hook per trigger, as the triggerer makes them; the same transport stands for the loop's shared one.
        return HappyHorseHook(
            conn_id,
            async_transport=self.transport,
            async_sleep=self.sleep,
            clock=self.clock,
            monotonic=self.clock.monotonic,
            rng=lambda: 0.5,
        )

    def times(self, method: str = "GET") -> list[float]:
        return [at for sent_method, _, at in self.sent if sent_method == method]


async def test_polls_of_many_triggers_share_the_connections_bucket(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = _PacedService()
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(60)))
    times = service.times()
    assert times == pytest.approx([index / 20.0 for index in range(60)])
    assert most_in_one_second(times) == 20
    assert throttled(times) == 0
    assert service.most_asleep == 1  # one timer for the whole queue


async def test_waiting_polls_go_by_the_end_of_their_jobs_allowance(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = _PacedService(finished=True)
    started = service.clock.now
    schedule = PollSchedule(first_poll_after=0.0, min_interval=2.0, max_interval=120.0)
    # (task id, the expected render time, started so long ago): every first poll is due at once.
    jobs = [("job-90", 90.0, 0.0), ("job-lost", 10.0, 100.0), ("job-60", 60.0, 0.0), ("job-30", 30.0, 0.0)]
    plans = [
        WaitPlan(
            job_id=job_id,
            started_at=started - timedelta(seconds=ago),
            deadline=started + timedelta(hours=1),
            schedule=schedule,
            estimate=RenderEstimate(started - timedelta(seconds=ago), expected),
        )
        for job_id, expected, ago in jobs
    ]
    events = await asyncio.gather(*(service.hook().await_job(plan) for plan in plans))
    assert [event.status for event in events] == ["success"] * 4
    # The first finds the token; then the soonest allowance (30 s: it ends at 35 s), then 60 s, and the job
    # whose allowance ended 87 s ago last. In the order they came it would be 90, lost, 60, 30.
    assert [(task_id, at) for _, task_id, at in service.sent] == [
        ("job-90", 0.0),
        ("job-30", pytest.approx(0.05)),
        ("job-60", pytest.approx(0.10)),
        ("job-lost", pytest.approx(0.15)),
    ]


async def test_a_cancelled_poll_gives_its_place_back_and_the_others_go_on(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = _PacedService()
    await service.hook().aget_settings()  # the connection is looked up once per loop: done before the polls
    bucket = query_buckets.in_loop("happyhorse_default", 20.0, service.clock.monotonic()).bucket
    polls = [asyncio.create_task(service.hook().aget_job(f"job-{index}")) for index in range(6)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert bucket.waiting == 5  # the first has been sent, no time has passed yet
    assert service.sent == [("GET", "job-0", 0.0)]
    polls[1].cancel()  # the one keeping time
    polls[3].cancel()  # one awaiting its turn
    async with asyncio.timeout(10):  # had nobody taken over the timekeeping, the others would wait for ever
        done = await asyncio.gather(*polls, return_exceptions=True)
    assert [isinstance(result, asyncio.CancelledError) for result in done] == [False, True, False, True, False, False]
    assert [(task_id, at) for _, task_id, at in service.sent] == [
        ("job-0", 0.0),
        ("job-2", pytest.approx(0.05)),
        ("job-4", pytest.approx(0.10)),
        ("job-5", pytest.approx(0.15)),
    ]
    assert bucket.waiting == 0


async def test_the_extra_sets_the_rate_and_happyhorse_app_is_not_paced(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST, extra={"max_queries_per_second": 4})
    service = _PacedService()
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(8)))
    assert service.times() == pytest.approx([index / 4.0 for index in range(8)])

    connection(conn_id="happyhorse_app", host=BASE_URL)
    app = FakeService(then=ok_job())
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    hooks = [HappyHorseHook("happyhorse_app", async_transport=app.transport(), async_sleep=sleep) for _ in range(30)]
    await asyncio.gather(*(hook.aget_job("job-1") for hook in hooks))
    assert app.status_calls == 30
    assert slept == []  # nothing waited


async def test_a_submission_is_not_kept_waiting_behind_polls(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    service = _PacedService()
    polls = [asyncio.create_task(service.hook().aget_job(TASK_ID)) for _ in range(40)]
    await asyncio.sleep(0)  # two seconds' worth of polls are waiting for tokens
    await service.hook().asubmit_job(VideoRequest(prompt="a horse"))
    await asyncio.gather(*polls)
    assert service.times("POST") == [0.0]  # sent at once, ahead of 39 waiting polls
    assert service.times() == pytest.approx([index / 20.0 for index in range(40)])


async def test_each_event_loop_and_connection_has_its_own_bucket(connection: ConnectionSetter) -> None:
    connection(host=DS_HOST)
    connection(host=DS_HOST, conn_id="other_account")
    service = _PacedService()
    await asyncio.gather(*(service.hook().aget_job(TASK_ID) for _ in range(3)))
    await service.hook("other_account").aget_job(TASK_ID)
    assert service.times() == pytest.approx([0.0, 0.05, 0.10, 0.10])  # the other account's token was there


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

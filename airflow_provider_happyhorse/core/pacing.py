"""
The account's query limit, as a token bucket with no I/O: the caller passes the time in and sleeps as told.

DashScope limits task queries (``GET /api/v1/tasks/{id}``) to 20 per second per Alibaba Cloud account, all
its keys together, and answers 429 ``Throttling.RateQuota`` beyond. A triggerer polling two thousand renders
would pass that as soon as their polls bunch up, and each 429 is a poll wasted and a detection put off. So
status polls wait for a token first: one bucket per connection per event loop in the triggerer
(``hooks.happyhorse.query_buckets``), one per connection per process on the sync path.

**Who goes first.** When polls come faster than the rate, some must wait, and the order decides how many jobs
are still seen within the detection target (``DETECTION_SLACK`` + ``DETECTION_SHARE`` x the render time after
the job finished). Each waiting poll carries ``detect_by``: when its job's allowance ends, counted from when the
job is expected to finish (``core.wait`` works it out from the render-time model the schedule uses). A free
token goes to:

1. a poll that has waited ``wait_limit`` seconds or more, longest waiting first (the bound below);
2. else a query outside a job's wait (no ``detect_by``: a single status read, such as a killed task's check
   that its job is still queued before cancelling it), which somebody awaits there and then;
3. else the poll whose allowance ends soonest among those whose allowance has not ended yet;
4. else (every waiting poll's allowance has ended) the poll that has waited longest.

First come, first served would make every poll wait behind all those queued before it, those whose job is
already past its allowance included, so that once the queue grows nobody is seen in time (8.1% of 2,000 jobs
within the target where 69.3% was possible; 42.6% in this order: ``docs/reports/benchmarks.md``). Serving the
soonest deadline first and a lost poll last is the order that sees the most jobs in time when each job needs one
query (earliest-deadline-first, the benchmark's ceiling), traded for later detections of the jobs already late.

**The bound.** A lost poll is not starved: once it has waited ``wait_limit`` seconds it goes ahead of every poll
that has waited less, in the order they came, so it is sent at most ``wait_limit`` seconds plus one token for
each poll that came before it and still waits (in the triggerer, at most one per trigger on the connection)
after it came.

**When the rate is not reached** nothing changes: a poll that finds a token is sent at once, and the order only
matters among polls that wait. The bucket holds one token (``burst``): after a quiet spell one poll goes at
once, the next ``1 / rate`` seconds later. The service's own bucket holds a second's worth (20 at DashScope), so
keeping ours at one leaves it nearly a second of slack for polls that the network or a busy loop bunches up on
their way; a burst as large as the service's would spend that slack, and a busy triggerer would then get 429s
for every bit of jitter.

The driver (the hook) holds one :class:`Ticket` per waiting poll: :meth:`QueryBucket.join` when the poll is
due, :meth:`QueryBucket.grant` to learn whose turn it is (the caller wakes them), :meth:`QueryBucket.until_token`
for how long to sleep before asking again, and :meth:`QueryBucket.leave` for a waiter cancelled before it sent
its poll, which gives its place or its unused token back. The sync path (blocking waits and sensors, a few per
worker process) takes :meth:`QueryBucket.reserve` instead: its token at once, in the order its threads ask.

Only status polls are paced. Submissions are not: the documented limit is the query limit, a submission is
never kept waiting behind polls, and the service's answer to one submission too many (a 429) is one the
submission rule already handles (sent again after the wait: nothing was created). A cancel is one request at a
kill or a deadline, which does not wait; DashScope counts cancels apart from queries.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from airflow_provider_happyhorse.constants import QUERY_WAIT_LIMIT

# A token counted as there when this close to whole: sleeping the seconds ``until_token`` gives can leave the
# float sum a hair short of 1.
_WHOLE = 1.0 - 1e-9


@dataclass(eq=False)
class Ticket:
    """
    One status query waiting for a token. ``detect_by``: when its job's detection allowance ends (None: a query
    outside a wait); ``arrived``: when it began to wait (both on the bucket's clock). ``state``: ``waiting``,
    then ``granted`` (the caller may send it) or ``left`` (cancelled, its place or token given back).
    """

    detect_by: float | None
    arrived: float
    number: int
    state: Literal["waiting", "granted", "left"] = "waiting"

    @property
    def granted(self) -> bool:
        return self.state == "granted"


@dataclass
class QueryBucket:
    """
    ``rate`` tokens a second, at most ``burst`` kept; on the sync path (:meth:`reserve`) ``tokens`` below zero are
    promised to waiters. Times are seconds on one monotonic clock (the caller's). ``wait_limit``: the longest a
    query waits before it goes ahead of every query that has waited less.
    """

    rate: float
    now: float
    burst: float = 1.0
    tokens: float = 1.0
    wait_limit: float = QUERY_WAIT_LIMIT
    # The waiting tickets, twice: by the end of their allowance, and by arrival. A ticket granted or gone from
    # one is skipped when it comes to the top of the other (``_top``).
    _by_deadline: list[tuple[float, int, Ticket]] = field(default_factory=list, repr=False)
    _by_arrival: list[tuple[float, int, Ticket]] = field(default_factory=list, repr=False)
    _numbers: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    waiting: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.wait_limit < 0:
            raise ValueError(
                "a query bucket needs a rate above 0, a burst of at least 1 and a wait limit of at least 0, "
                f"not {self!r}"
            )
        self.tokens = min(self.tokens, self.burst)

    def _refill(self, now: float) -> None:
        if now > self.now:  # a clock that steps back adds nothing
            self.tokens = min(self.burst, self.tokens + (now - self.now) * self.rate)
            self.now = now

    # -- the event loop's queue -------------------------------------------------------------------------------

    def join(self, now: float, detect_by: float | None = None) -> Ticket:
        """
        A query due now starts to wait (``grant`` says when it may go). ``detect_by`` None: a query outside a
        job's wait, which goes ahead of the waits' polls.
        """
        ticket = Ticket(detect_by, now, next(self._numbers))
        first = -math.inf if detect_by is None else detect_by
        heapq.heappush(self._by_deadline, (first, ticket.number, ticket))
        heapq.heappush(self._by_arrival, (ticket.arrived, ticket.number, ticket))
        self.waiting += 1
        return ticket

    def grant(self, now: float) -> list[Ticket]:
        """The waiting queries whose turn it is at ``now`` (each takes a token), best first; often none."""
        self._refill(now)
        granted: list[Ticket] = []
        while self.tokens >= _WHOLE and (ticket := self._next(now)) is not None:
            ticket.state = "granted"
            self.waiting -= 1
            self.tokens -= 1.0
            granted.append(ticket)
        return granted

    def until_token(self, now: float) -> float:
        """Seconds from ``now`` until the next token (0: one is there)."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def leave(self, ticket: Ticket, now: float) -> None:
        """A waiter gone before sending its query: its place goes, or the token it was granted comes back."""
        if ticket.state == "waiting":
            self.waiting -= 1
        elif ticket.state == "granted":
            self._refill(now)
            self.tokens = min(self.burst, self.tokens + 1.0)
        ticket.state = "left"

    def _next(self, now: float) -> Ticket | None:
        """The ticket a free token goes to (None: nobody waits): see the module's rule."""
        longest = _top(self._by_arrival)
        if longest is None:
            return None
        if now - longest.arrived >= self.wait_limit:
            heapq.heappop(self._by_arrival)
            return longest
        while (soonest := _top(self._by_deadline)) is not None and _lost(soonest, now):
            heapq.heappop(self._by_deadline)  # its allowance has ended: it is served by arrival from now on
        if soonest is not None:
            heapq.heappop(self._by_deadline)
            return soonest
        heapq.heappop(self._by_arrival)
        return longest

    # -- the sync path ----------------------------------------------------------------------------------------

    def reserve(self, now: float) -> float:
        """Take a token at once, letting the count go below zero; the seconds to wait before sending the query."""
        self._refill(now)
        self.tokens -= 1.0
        return max(0.0, -self.tokens / self.rate)


def _lost(ticket: Ticket, now: float) -> bool:
    return ticket.detect_by is not None and ticket.detect_by < now


def _top(heap: list[tuple[float, int, Ticket]]) -> Ticket | None:
    """The first ticket of ``heap`` still waiting, dropping those granted or gone."""
    while heap and heap[0][2].state != "waiting":
        heapq.heappop(heap)
    return heap[0][2] if heap else None

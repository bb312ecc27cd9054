"""
The account's query limit, as a token bucket with no I/O: the caller passes the time in and sleeps as told.

DashScope limits task queries (``GET /api/v1/tasks/{id}``) to 20 per second per Alibaba Cloud account, all
its keys together, and answers 429 ``Throttling.RateQuota`` beyond. A triggerer polling two thousand renders
would pass that as soon as their polls bunch up, and each 429 is a poll wasted and a detection put off. So
status polls take a token first (:meth:`QueryBucket.reserve`): one bucket per connection per event loop in the
triggerer (``hooks.happyhorse.query_buckets``), one per connection per process on the sync path.

A reservation, not a retry: :meth:`reserve` takes the token at once, letting the count go below zero, and
says how long to wait for it. Polls so go out in the order they became due, one every ``1 / rate`` seconds
once the bucket is empty, and nobody wakes up to find the token gone. A waiter cancelled before its turn
gives its token back (:meth:`give_back`).

The bucket holds one token (``burst``): after a quiet spell one poll goes at once, the next ``1 / rate``
seconds later. The service's own bucket holds a second's worth (20 at DashScope), so keeping ours at one
leaves it nearly a second of slack for polls that the network or a busy loop bunches up on their way;
a burst as large as the service's would spend that slack, and a busy triggerer would then get 429s for
every bit of jitter.

Only status polls are paced. Submissions are not: the documented limit is the query limit, a submission is
never kept waiting behind polls, and the service's answer to one submission too many (a 429) is one the
submission rule already handles (sent again after the wait: nothing was created). A cancel is one request at a
kill or a deadline, which does not wait; DashScope counts cancels apart from queries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class QueryBucket:
    """
    ``rate`` tokens a second, at most ``burst`` kept; ``tokens`` below zero are promised to waiters.
    Times are seconds on one monotonic clock (the caller's).
    """

    rate: float
    now: float
    burst: float = 1.0
    tokens: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a query bucket needs a rate above 0 and a burst of at least 1, not {self!r}")
        self.tokens = min(self.tokens, self.burst)

    def _refill(self, now: float) -> None:
        if now > self.now:  # a clock that steps back adds nothing
            self.tokens = min(self.burst, self.tokens + (now - self.now) * self.rate)
            self.now = now

    def reserve(self, now: float) -> float:
        """Take a token; the seconds to wait before sending the query (0: send now)."""
        self._refill(now)
        self.tokens -= 1.0
        return max(0.0, -self.tokens / self.rate)

    def give_back(self, now: float) -> None:
        """Return a reserved token that was not used (its waiter was cancelled)."""
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + 1.0)

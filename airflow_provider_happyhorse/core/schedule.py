"""When to poll a job: the render-time model that places the first poll, and the poll schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_happyhorse.constants import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_MIN_POLL_INTERVAL,
    DETECTION_SHARE,
    DETECTION_SLACK,
    POLL_JITTER,
    POLL_TICK,
    RENDER_AUDIO_FACTOR,
    RENDER_BASE_SECONDS,
    RENDER_PRO_FACTOR,
    RENDER_SECONDS_PER_VIDEO_SECOND,
    RENDER_SPREAD,
)


def expected_render_seconds(mode: str, duration: float, sound: bool) -> float:
    """The render-time model: how long HappyHorse likely takes for a clip of this mode, length and sound."""
    seconds = RENDER_BASE_SECONDS + RENDER_SECONDS_PER_VIDEO_SECOND * duration
    if mode == "pro":
        seconds *= RENDER_PRO_FACTOR
    if sound:
        seconds *= RENDER_AUDIO_FACTOR
    return seconds


def first_poll_for(expected_seconds: float) -> float:
    """The first poll: the earliest likely finish, plus the delay the detection target allows there."""
    earliest = expected_seconds * (1 - RENDER_SPREAD)
    return earliest * (1 + DETECTION_SHARE) + DETECTION_SLACK


@dataclass(frozen=True)
class PollSchedule:
    """
    When to poll a job. The first poll comes at ``first_poll_after`` (by default ``first_poll_for`` the
    expected render time); after that each wait is ``slack + growth x`` the time already spent, clamped
    to [min_interval, max_interval], so a job is seen within about ``slack + growth x`` its render time
    while the number of polls grows only logarithmically. Jitter only ever shortens a wait, so jobs
    submitted together spread out without missing that target. Never past the deadline.

    Given the wall-clock time, a wait is also shortened to end on a ``tick`` (at most half the floor),
    unless that would break the floor: polls of many jobs that fall due within one tick then share one
    wake-up of the triggerer's event loop. On a virtual machine a wake-up from idle costs about as
    much CPU as a whole status request (docs/reports/benchmarks.md, "Triggerer scale"); a poll is never
    made later by it.
    """

    first_poll_after: float
    min_interval: float = DEFAULT_MIN_POLL_INTERVAL
    max_interval: float = DEFAULT_MAX_POLL_INTERVAL
    growth: float = DETECTION_SHARE
    slack: float = DETECTION_SLACK
    jitter: float = POLL_JITTER
    tick: float = POLL_TICK

    def next_delay(
        self,
        *,
        elapsed: float,
        polls_done: int,
        remaining: float,
        rng: Callable[[], float],
        now: float | None = None,
    ) -> float:
        """Seconds to wait before the next poll; ``now`` (epoch seconds) puts its end on a tick."""
        if polls_done == 0:
            base = max(self.first_poll_after - elapsed, 0.0)
        else:
            base = min(max(self.slack + self.growth * elapsed, self.min_interval), self.max_interval)
        # |2u - 1| is uniform on [0, 1] like u, and a middle draw means no jitter at all.
        jittered = base * (1 - self.jitter * abs(2 * rng() - 1))
        if polls_done > 0:
            jittered = max(jittered, self.min_interval)  # the floor holds whatever the jitter
        delay = max(0.0, min(jittered, remaining))
        tick = min(self.tick, self.min_interval / 2)
        if now is None or tick <= 0:
            return delay
        on_tick = math.floor((now + delay) / tick) * tick - now
        if polls_done > 0 and on_tick < self.min_interval:
            return delay
        return max(on_tick, 0.0)

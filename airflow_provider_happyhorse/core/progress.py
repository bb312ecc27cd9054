"""
How far along a render should be, from the render-time model (``core.schedule.expected_render_seconds``):
one estimate, said in the task log a few times per render by the wait (``core.wait``) and shown in the
view's "renders in flight", in the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_happyhorse.core.schedule import expected_render_seconds
from airflow_provider_happyhorse.models import VideoRequest

# Said while the render should still be running: by waking the wait there when no poll falls there.
BEFORE_DUE = (0.25, 0.5, 0.75)
# Said when a poll finds the job still running past this share of its usual time: 1x, then each doubling.
OVERDUE_FIRST = 1.0


def about(seconds: float) -> str:
    """A duration as a person reads it: ~20 s, ~3 min."""
    if seconds < 90:
        return f"~{max(round(seconds), 1)} s"
    return f"~{round(seconds / 60)} min"


@dataclass(frozen=True)
class RenderEstimate:
    """A render submitted at ``submitted_at`` that usually takes ``expected_seconds``."""

    submitted_at: datetime
    expected_seconds: float

    @classmethod
    def of_request(cls, request: VideoRequest, submitted_at: datetime) -> RenderEstimate:
        return cls(submitted_at, expected_render_seconds(request.mode, request.duration, request.sound))

    @property
    def expected_finish(self) -> datetime:
        return self.submitted_at + timedelta(seconds=self.expected_seconds)

    def share(self, now: datetime) -> float:
        """The part of the usual render time gone by (past 1 once overdue)."""
        return max((now - self.submitted_at).total_seconds(), 0.0) / self.expected_seconds

    def at_share(self, share: float) -> datetime:
        return self.submitted_at + timedelta(seconds=share * self.expected_seconds)

    def describe(self, now: datetime) -> str:
        """Where the render should be now: 'about 60% by the usual render time, expected done in ~20 s'."""
        left = (self.expected_finish - now).total_seconds()
        usual = f"the usual render time ({about(self.expected_seconds)})"
        if left > 0:
            percent = min(math.floor(self.share(now) * 100), 99)
            return f"about {percent}% by {usual}, expected done in {about(left)}"
        return f"past {usual} by {about(-left)}"


def next_before_due(estimate: RenderEstimate, said: float, now: datetime, wake: datetime) -> float | None:
    """The first share of ``BEFORE_DUE`` after ``said`` that falls after ``now`` and before ``wake``, if any."""
    for share in BEFORE_DUE:
        if share > said and now <= estimate.at_share(share) < wake:
            return share
    return None


def overdue_due(estimate: RenderEstimate, said: float, now: datetime) -> float | None:
    """
    The overdue step reached at ``now`` and not yet said (1x the usual time, then 2x, 4x, ...), or None:
    a render past its usual time is said at the poll that finds it still running, a few times at most.
    """
    share = estimate.share(now)
    if share < OVERDUE_FIRST:
        return None
    step = OVERDUE_FIRST * 2 ** math.floor(math.log2(share / OVERDUE_FIRST))
    return step if step > said else None

"""
The one wait for a job, as a flow with no I/O: the poll schedule, a queued job's longer wait, a
server's ``Retry-After``, the backoff after a failed connection, the not-found grace, the deadline and
the warning for a status the contract does not name. Blocking mode (``HappyHorseHook.wait_for_job``),
the trigger (``HappyHorseHook.await_job``) and the sensor's poke (``HappyHorseHook.wait_in_steps``)
only drive it; it returns the one :class:`JobEvent` that ends the wait.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_happyhorse.constants import NOT_FOUND_GRACE
from airflow_provider_happyhorse.core.flows import Flow, Sleep, status_flow
from airflow_provider_happyhorse.core.progress import BEFORE_DUE, RenderEstimate, next_before_due, overdue_due
from airflow_provider_happyhorse.core.retries import is_retryable, poll_retry_delay, retry_after_of
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.exceptions import HappyHorseError, NotFoundError
from airflow_provider_happyhorse.models import JobEvent, JobState, JobStatus

# What the wait has to say, as a logging call: (level, message, *arguments).
Say = Callable[..., None]
# Told what each poll found: running, final, transient_error, not_found or error (the hook counts them).
OnPoll = Callable[[str], None]


def _ignore(outcome: str) -> None:
    pass


@dataclass(frozen=True)
class WaitPlan:
    """
    One job's wait. ``started_at`` is its submission, or for a sensor (``since`` says which) when it
    began waiting: the schedule and the not-found grace count from it. ``estimate``: the render-time
    model's estimate for the job, when its request is known: the wait says how far along the render
    should be at 25, 50 and 75% of its usual time (waking for it when no poll falls there) and, at a poll
    that finds it still running, once past 1x, 2x, 4x... that time. ``progress_every``: for a job whose
    request is unknown (a sensor's), say how it is doing at most this often; None says nothing.
    """

    job_id: str
    started_at: datetime
    deadline: datetime
    schedule: PollSchedule
    since: str = "submission"
    progress_every: timedelta | None = None
    estimate: RenderEstimate | None = None

    def detect_by(self, due: datetime, seen_running: datetime | None) -> datetime:
        """
        When the detection allowance of the job's poll due at ``due`` ends: the schedule's ``slack + growth x``
        the render time (the target, 2 s + 10%), after the job is expected to finish. That is the render-time
        model's expected finish (``estimate``, the same one the first poll and the progress lines come from), and
        without a model the moment the poll falls due; never before ``seen_running``, when a poll last found the
        job still running. Under the account's query limit the polls whose allowance ends soonest go first
        (``core.pacing``).
        """
        finish = due if self.estimate is None else self.estimate.expected_finish
        if seen_running is not None and seen_running > finish:
            finish = seen_running
        render = max((finish - self.started_at).total_seconds(), 0.0)
        return finish + timedelta(seconds=self.schedule.slack + self.schedule.growth * render)


def wait_flow(
    settings: ConnectionSettings,
    plan: WaitPlan,
    *,
    clock: Callable[[], datetime],
    rng: Callable[[], float],
    say: Say,
    on_poll: OnPoll = _ignore,
) -> Flow[JobEvent]:
    """Poll until the job is final, a permanent error or the deadline; each poll is one request."""
    job_id, deadline = plan.job_id, plan.deadline
    polls = transient_errors = failures_in_a_row = 0
    warned_status: str | None = None  # the last unknown status reported
    at_least: float | None = None  # wait at least this long (Retry-After, a queued job)
    at_most: float | None = None  # wait at most this long (a connection failure)
    last_error: HappyHorseError | None = None
    seen_running: datetime | None = None  # when a poll last found the job still running
    last_told = plan.started_at
    estimate = plan.estimate
    # The progress lines already said (or passed before this wait began: a resumed trigger does not repeat them).
    said_before_due = 0.0 if estimate is None else max([0.0, *(s for s in BEFORE_DUE if estimate.share(clock()) >= s)])
    said_overdue = 0.0

    def ended(event: JobEvent) -> JobEvent:
        return event.model_copy(update={"polls": polls, "transient_errors": transient_errors})

    while True:
        now = clock()
        remaining = max((deadline - now).total_seconds(), 0.0)
        delay = plan.schedule.next_delay(
            elapsed=(now - plan.started_at).total_seconds(),
            polls_done=polls,
            remaining=remaining,
            rng=rng,
            now=now.timestamp(),
        )
        if at_least is not None:
            delay = min(max(delay, at_least), remaining)
        if at_most is not None:
            delay = min(delay, at_most)
        at_least = at_most = None
        if last_error is not None:
            say(
                logging.WARNING,
                "Status of job %s unavailable (%s); transient error %d, polling again in %.1f s",
                job_id,
                last_error,
                transient_errors,
                delay,
            )
            last_error = None
        if estimate is not None:
            wake = now + timedelta(seconds=delay)
            while (share := next_before_due(estimate, said_before_due, clock(), wake)) is not None:
                said_before_due = share
                until = min(
                    _until(estimate.at_share(share), clock(), plan.schedule.tick), (wake - clock()).total_seconds()
                )
                yield Sleep(max(until, 0.0), reason="a progress line")
                say(logging.INFO, "Job %s: %s", job_id, estimate.describe(clock()))
            delay = max((wake - clock()).total_seconds(), 0.0)
        yield Sleep(delay, reason="the next poll")
        polls += 1
        try:
            job = yield from status_flow(
                settings, job_id, max_retries=0, rng=rng, detect_by=plan.detect_by(clock(), seen_running)
            )
        except NotFoundError as error:
            on_poll("not_found")
            now = clock()
            if now - plan.started_at <= NOT_FOUND_GRACE and now < deadline:
                say(logging.INFO, "Job %s not found yet (%s); polling again", job_id, error)
                continue
            say(logging.ERROR, "Polling job %s failed: %s", job_id, error)
            return ended(JobEvent.from_error(job_id, error, finished_at=now.isoformat()))
        except HappyHorseError as error:
            now = clock()
            permanent = not is_retryable(error, "status")
            on_poll("error" if permanent else "transient_error")
            if permanent:  # the wait ends
                say(logging.ERROR, "Polling job %s failed: %s", job_id, error)
                return ended(JobEvent.from_error(job_id, error, finished_at=now.isoformat()))
            transient_errors += 1
            failures_in_a_row += 1
            if now >= deadline:
                return ended(_timed_out(plan, str(error), now, say))
            at_least = retry_after_of(error)
            at_most = poll_retry_delay(error, failures_in_a_row, settings.policy, rng)
            last_error = error
            continue
        failures_in_a_row = 0
        now = clock()
        on_poll("running" if job.state is JobState.PENDING else "final")
        if job.state is not JobState.PENDING:
            return ended(_final(plan, job, polls, now, say))
        seen_running = now
        if not job.is_known_status and job.status != warned_status:
            warned_status = job.status
            say(logging.WARNING, "Job %s reports unknown status %r; treating it as still running", job_id, job.status)
        if job.is_queued:
            # Still queued behind other renders: a whole render is still ahead of it.
            at_least = plan.schedule.first_poll_after
        if now >= deadline:
            return ended(_timed_out(plan, f"last status {job.status}", now, say))
        if estimate is not None and (step := overdue_due(estimate, said_overdue, now)) is not None:
            said_overdue = step
            say(logging.INFO, "Job %s is still %s: %s", job_id, job.status, estimate.describe(now))
        if plan.progress_every is not None and now - last_told >= plan.progress_every:
            last_told = now
            say(
                logging.INFO,
                "Job %s is still %s, %.0f s after %s (%d %s so far; deadline %s)",
                job_id,
                job.status,
                (now - plan.started_at).total_seconds(),
                plan.since,
                polls,
                "poll" if polls == 1 else "polls",
                deadline.isoformat(timespec="seconds"),
            )


def _until(at: datetime, now: datetime, tick: float) -> float:
    """Seconds from ``now`` to ``at``, put off to the next tick: many waits' progress lines share a wake-up."""
    when = at.timestamp()
    if tick > 0:
        when = math.ceil(when / tick) * tick
    return max(when - now.timestamp(), 0.0)


def _final(plan: WaitPlan, job: JobStatus, polls: int, now: datetime, say: Say) -> JobEvent:
    if job.state is JobState.FAILED:
        say(logging.INFO, "Job %s ended %s: %s", job.job_id, job.status, job.error_message)
    else:
        say(
            logging.INFO,
            "Job %s is %s, seen by poll %d, %.0f s after %s (the service finished it at or before then): %s",
            job.job_id,
            job.status,
            polls,
            (now - plan.started_at).total_seconds(),
            plan.since,
            job.video_url,
        )
    return JobEvent.from_job(job, finished_at=now.isoformat())


def _timed_out(plan: WaitPlan, detail: str, now: datetime, say: Say) -> JobEvent:
    deadline = plan.deadline.isoformat()
    say(logging.WARNING, "Job %s still running at its deadline %s (%s)", plan.job_id, deadline, detail)
    return JobEvent.timed_out(plan.job_id, deadline=deadline, detail=detail, finished_at=now.isoformat())

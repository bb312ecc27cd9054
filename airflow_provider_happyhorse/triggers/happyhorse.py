"""``HappyHorseJobTrigger``: polls one job in the triggerer until it is final or its deadline passes."""

from __future__ import annotations

import asyncio
import functools
import gc
import random
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.providers.common.compat.sdk import conf
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_happyhorse import client_core
from airflow_provider_happyhorse.client_core import PollSchedule
from airflow_provider_happyhorse.exceptions import HappyHorseError, NotFoundError
from airflow_provider_happyhorse.hooks.happyhorse import NOT_FOUND_GRACE, HappyHorseHook
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink
from airflow_provider_happyhorse.models import JobEvent, JobState, JobStatus, VideoResult


@functools.cache
def freeze_heap_once() -> None:
    """
    Once per process, as the first HappyHorse trigger starts: move every object alive then (the
    triggerer's imported modules and state, mostly) to the garbage collector's permanent generation,
    unless ``[happyhorse] freeze_triggerer_heap`` is false.

    A full collection walks every tracked object and pauses the event loop meanwhile: in a triggerer
    that is Airflow's own heap (about 100 ms here) plus what the waiting triggers keep alive, a stall
    of every trigger in the process. Frozen objects are skipped; they are still freed by reference
    counting, and only cycles among them that become garbage later are never collected. Airflow's
    LocalExecutor and DAG processor freeze their heaps too (before forking).
    """
    if conf.getboolean("happyhorse", "freeze_triggerer_heap", fallback=True):
        gc.freeze()


class HappyHorseJobTrigger(BaseTrigger):
    """
    Waits for a HappyHorse job without holding a worker slot.

    Its kwargs are JSON primitives and never the API key (Airflow prints them in logs): the connection
    is fetched asynchronously in the triggerer. Polling is read-only, so two triggerers running the same
    trigger at once do no harm. Transient errors (429, 5xx, transport errors, malformed bodies) never
    end it before ``deadline``; the job's end, a permanent error or the deadline does, with exactly one
    event that carries the job id.

    :param job_id: the HappyHorse task id.
    :param happyhorse_conn_id: the Airflow connection to use.
    :param deadline: ISO-8601 UTC time after which the trigger gives up (``timeout`` event).
    :param submitted_at: ISO-8601 UTC time the job was submitted, or for a sensor (``result`` None) when it
        began waiting (the poll schedule counts from it).
    :param first_poll_after: seconds after submission of the first poll (near the expected finish).
    :param min_poll_interval: the floor between polls.
    :param max_poll_interval: the cap between polls.
    :param result: the known part of the task's result; when ``end_task_on_success`` is true the trigger
        completes it and ends the task itself, so no worker starts again.
    :param end_task_on_success: end the task from the triggerer on success (nothing left for a worker).
    """

    def __init__(
        self,
        *,
        job_id: str,
        happyhorse_conn_id: str,
        deadline: str,
        submitted_at: str,
        first_poll_after: float,
        min_poll_interval: float,
        max_poll_interval: float,
        result: dict[str, Any] | None = None,
        end_task_on_success: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is not annotated
        self.job_id = job_id
        self.happyhorse_conn_id = happyhorse_conn_id
        self.deadline = deadline
        self.submitted_at = submitted_at
        self.first_poll_after = first_poll_after
        self.min_poll_interval = min_poll_interval
        self.max_poll_interval = max_poll_interval
        self.result = result
        self.end_task_on_success = end_task_on_success

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "happyhorse_conn_id": self.happyhorse_conn_id,
                "deadline": self.deadline,
                "submitted_at": self.submitted_at,
                "first_poll_after": self.first_poll_after,
                "min_poll_interval": self.min_poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "result": self.result,
                "end_task_on_success": self.end_task_on_success,
            },
        )

    # Seams for tests: time and the hook (whose transport a test scripts).
    def _make_hook(self) -> HappyHorseHook:
        return HappyHorseHook(self.happyhorse_conn_id)

    def _now(self) -> datetime:
        return datetime.now(timezone.utc)

    # Not a wrapper coroutine: one frame less kept alive by every waiting trigger.
    _sleep = staticmethod(asyncio.sleep)

    def _rng(self) -> float:
        return random.random()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The event is yielded after the HTTP session is released: nothing is left to clean up once a
        # consumer has the event and closes this generator.
        event = await self._wait()
        yield event

    async def _wait(self) -> TriggerEvent:
        freeze_heap_once()
        deadline = datetime.fromisoformat(self.deadline)
        submitted_at = datetime.fromisoformat(self.submitted_at)
        schedule = PollSchedule(
            first_poll_after=self.first_poll_after,
            min_interval=self.min_poll_interval,
            max_interval=self.max_poll_interval,
        )
        hook = self._make_hook()
        polls = 0
        transient_errors = 0
        failures_in_a_row = 0
        warned_status: str | None = None  # the last unknown status reported
        next_wait: float | None = None  # wait at least this long (Retry-After, a queued job)
        retry_soon: float | None = None  # wait at most this long (a connection failure)
        last_error: HappyHorseError | None = None
        # Nothing is logged until there is news (healthy polls log nothing): a waiting trigger keeps few
        # objects alive, no logger among them, as each one lengthens the garbage collector's pauses of
        # the triggerer's event loop.
        async with hook.async_session():
            policy = (await hook.aget_settings()).policy
            while True:
                now = self._now()
                remaining = max((deadline - now).total_seconds(), 0.0)
                delay = schedule.next_delay(
                    elapsed=(now - submitted_at).total_seconds(),
                    polls_done=polls,
                    remaining=remaining,
                    rng=self._rng,
                    now=now.timestamp(),
                )
                if next_wait is not None:
                    delay = min(max(delay, next_wait), remaining)
                    next_wait = None
                if retry_soon is not None:
                    delay = min(delay, retry_soon)
                    retry_soon = None
                if last_error is not None:
                    self.log.warning(
                        "Status of job %s unavailable (%s); transient error %d, polling again in %.1f s",
                        self.job_id,
                        last_error,
                        transient_errors,
                        delay,
                    )
                    last_error = None
                await self._sleep(delay)
                polls += 1
                try:
                    job = await hook.aget_job(self.job_id, max_attempts=1)
                except NotFoundError as error:
                    if self._now() - submitted_at <= NOT_FOUND_GRACE and self._now() < deadline:
                        self.log.info("Job %s not found yet (%s); polling again", self.job_id, error)
                        continue
                    return self._error_event(error, polls, transient_errors)
                except HappyHorseError as error:
                    if not client_core.is_retryable_poll_error(error):
                        return self._error_event(error, polls, transient_errors)
                    transient_errors += 1
                    failures_in_a_row += 1
                    if self._now() >= deadline:
                        return self._timeout_event(polls, transient_errors, str(error))
                    next_wait = client_core.retry_after_of(error)
                    retry_soon = client_core.poll_retry_delay(error, failures_in_a_row, policy, self._rng)
                    last_error = error
                    continue
                failures_in_a_row = 0
                if job.state is JobState.PENDING:
                    if not job.is_known_status and job.status != warned_status:
                        warned_status = job.status
                        self.log.warning(
                            "Job %s reports unknown status %r; treating it as still running",
                            self.job_id,
                            job.status,
                        )
                    if job.is_queued:
                        # Still queued behind other renders: a whole render is still ahead of it.
                        next_wait = self.first_poll_after
                    if self._now() >= deadline:
                        return self._timeout_event(polls, transient_errors, f"last status {job.status}")
                    continue
                return await self._final_event(job, polls, transient_errors)

    async def _final_event(self, job: JobStatus, polls: int, transient_errors: int) -> TriggerEvent:
        event = JobEvent.from_job(
            job, finished_at=self._now().isoformat(), polls=polls, transient_errors=transient_errors
        )
        if job.state is JobState.FAILED:
            self.log.info("Job %s ended %s: %s", self.job_id, job.status, job.error_message)
            return TriggerEvent(event.payload())
        elapsed = (self._now() - datetime.fromisoformat(self.submitted_at)).total_seconds()
        self.log.info(
            "Job %s is %s, seen by poll %d, %.0f s after %s (the service finished it at or before then): %s",
            self.job_id,
            job.status,
            polls,
            elapsed,
            # A sensor waits for a job made elsewhere: it knows when it began waiting, not when it was submitted.
            "submission" if self.result is not None else "the sensor began waiting",
            job.video_url,
        )
        if self.end_task_on_success:
            # No worker runs after this event, so the trigger stores what the worker would have: the
            # result, the job id, and the extra link's URL.
            known = None if self.result is None else VideoResult.model_validate(self.result)
            result = VideoResult.of_event(event, known).payload()
            xcoms = {"return_value": result, "job_id": self.job_id, HappyHorseVideoLink().xcom_key: job.video_url}
            if await self._push_xcoms(xcoms):
                return TaskSuccessEvent()
        return TriggerEvent(event.payload())

    async def _push_xcoms(self, xcoms: dict[str, Any]) -> bool:
        """
        Store XComs the way a worker does, through the triggerer's supervisor (asynchronously: a
        synchronous call from the event loop could deadlock). ``TaskSuccessEvent(xcoms=...)`` is not
        used: Airflow 3.3.2 stores those values JSON-encoded twice, so downstream tasks would get text
        instead of the result dict. False when this triggerer offers no such channel; the task then
        finishes on a worker instead, with correct XComs and one more worker start.
        """
        ti = self.task_instance
        try:
            from airflow.sdk.execution_time import task_runner
            from airflow.sdk.execution_time.comms import SetXCom
            from airflow.sdk.execution_time.xcom import XCom
        except ImportError:
            return False
        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
        if ti is None or comms is None or not hasattr(comms, "asend"):
            return False
        where = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index}
        try:
            for key, value in xcoms.items():
                # A custom XCom backend may do I/O to serialize: keep it off the event loop.
                stored = await asyncio.to_thread(XCom.serialize_value, value=value, key=key, **where)
                await comms.asend(SetXCom(key=key, value=stored, **where))
        except Exception:
            self.log.warning(
                "Could not store the result from the triggerer; the task finishes on a worker", exc_info=True
            )
            return False
        return True

    def _timeout_event(self, polls: int, transient_errors: int, detail: str) -> TriggerEvent:
        self.log.warning("Job %s still running at its deadline %s (%s)", self.job_id, self.deadline, detail)
        event = JobEvent.timed_out(
            self.job_id,
            deadline=self.deadline,
            detail=detail,
            finished_at=self._now().isoformat(),
            polls=polls,
            transient_errors=transient_errors,
        )
        return TriggerEvent(event.payload())

    def _error_event(self, error: HappyHorseError, polls: int, transient_errors: int) -> TriggerEvent:
        self.log.error("Polling job %s failed: %s", self.job_id, error)
        event = JobEvent.from_error(
            self.job_id, error, finished_at=self._now().isoformat(), polls=polls, transient_errors=transient_errors
        )
        return TriggerEvent(event.payload())

    async def on_kill(self) -> None:
        # Airflow 3.3.2 calls this for a user's kill and also when it moves the trigger to another
        # triggerer: the message must hold for both, and nothing is cancelled in either case.
        self.log.warning(
            "Stopped polling HappyHorse job %s here: the task was killed, or Airflow moved this trigger to "
            "another triggerer (which goes on polling it). Nothing was cancelled: HappyHorse has no cancel "
            "endpoint, so the job runs on the service either way.",
            self.job_id,
        )

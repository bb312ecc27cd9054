"""``HappyHorseJobTrigger``: polls one job in the triggerer until it is final or its deadline passes."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import conf
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.core.egress import EgressRule
from airflow_provider_happyhorse.core.progress import RenderEstimate
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink, shown_url
from airflow_provider_happyhorse.models import JobEvent, VideoResult


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

    .. seealso::
        What it does for a task: :doc:`/howto/trigger` in the provider's documentation (``docs/howto/trigger.md``).

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

    # The seam for tests: the hook (whose transport, clock and sleep a test scripts).
    def _make_hook(self) -> HappyHorseHook:
        return HappyHorseHook(self.happyhorse_conn_id)

    def plan(self) -> WaitPlan:
        return WaitPlan(
            job_id=self.job_id,
            started_at=datetime.fromisoformat(self.submitted_at),
            deadline=datetime.fromisoformat(self.deadline),
            schedule=PollSchedule(
                first_poll_after=self.first_poll_after,
                min_interval=self.min_poll_interval,
                max_interval=self.max_poll_interval,
            ),
            # A sensor waits for a job made elsewhere: it knows when it began waiting, not when it was submitted.
            since="submission" if self.result is not None else "the sensor began waiting",
            estimate=RenderEstimate.of_body((self.result or {}).get("request"), self.submitted_at),
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The event is yielded after the HTTP session is released: nothing is left to clean up once a
        # consumer has the event and closes this generator.
        freeze_heap_once()
        await metrics.await_started(conn_id=self.happyhorse_conn_id)
        hook = self._make_hook()
        event = await hook.await_job(self.plan())
        yield await self._ending(event, (await hook.aget_settings()).egress)

    async def _ending(self, event: JobEvent, rule: EgressRule) -> TriggerEvent:
        """The event's payload, or on success with ``end_task_on_success`` the task's end itself."""
        if event.status == "success" and self.end_task_on_success:
            # No worker runs after this event, so the trigger stores what the worker would have: the
            # result, the job id, and the extra link's URL.
            known = None if self.result is None else VideoResult.model_validate(self.result)
            result = VideoResult.of_event(event, known).payload()
            link = shown_url(event.video_url, rule)
            xcoms = {"return_value": result, "job_id": self.job_id, HappyHorseVideoLink().xcom_key: link}
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

    async def on_kill(self) -> None:
        # Airflow 3.3.2 calls this for a user's kill and also when it moves the trigger to another
        # triggerer: the message must hold for both, and nothing is cancelled in either case.
        self.log.warning(
            "Stopped polling HappyHorse job %s here: the task was killed, or Airflow moved this trigger to "
            "another triggerer (which goes on polling it). Nothing was cancelled: HappyHorse has no cancel "
            "endpoint, so the job runs on the service either way.",
            self.job_id,
        )

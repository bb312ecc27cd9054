"""``HappyHorseJobTrigger``: polls one job in the triggerer until it is final or its deadline passes."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.providers.common.compat.sdk import conf
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.constants import XCOM_JOB_ID_KEY, XCOM_RESULT_KEY
from airflow_provider_happyhorse.core.egress import EgressRule
from airflow_provider_happyhorse.core.kill import (
    CANCEL_TIMEOUT,
    STATE_QUERY_TIMEOUT,
    KillVerdict,
    TaskAt,
    killed_message,
    moved_message,
    timed_out_cancellation,
    undecided_message,
    verdict,
    watched_message,
)
from airflow_provider_happyhorse.core.record import RenderRecord, Since
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink, shown_url
from airflow_provider_happyhorse.models import JobEvent


def triggerer_calls_on_kill() -> bool:
    """
    Whether this Airflow's triggerer calls a trigger's ``on_kill`` when a user kills its deferred task: Airflow 3.3.2
    does (``BaseTrigger.on_kill``); 3.0.6, the oldest supported, has no such hook and cancels nothing.
    """
    return hasattr(BaseTrigger, "on_kill")


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

    Its kwargs are JSON primitives and never the API key (Airflow prints them in logs): the render's
    record (``RenderRecord.model_dump(mode="json")``) and the connection id; the connection is fetched
    asynchronously in the triggerer. Polling is read-only, so two triggerers running the same trigger at
    once do no harm. Transient errors (429, 5xx, transport errors, malformed bodies) never end it before
    the record's ``deadline``; the job's end, a permanent error or the deadline does, with exactly one
    event that carries the job id.

    :param record: the render: its job id, start (``since`` says what it is), deadline and poll schedule,
        what is known of its result, and ``end_task_on_success`` (on success the trigger completes the
        result and ends the task itself, so no worker starts again). A ``RenderRecord`` or its JSON.
    :param happyhorse_conn_id: the Airflow connection to use.
    :param earlier_kwargs: the flat kwargs of a trigger serialized by the release before this one (``job_id``,
        ``deadline``, ``submitted_at``, ``first_poll_after``...), still read from a running deployment's
        trigger rows when ``record`` is not given.
    """

    def __init__(
        self,
        *,
        record: RenderRecord | dict[str, Any] | None = None,
        happyhorse_conn_id: str,
        **earlier_kwargs: Any,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is not annotated
        self.record = RenderRecord.from_trigger_kwargs({"record": record} if record is not None else earlier_kwargs)
        self.happyhorse_conn_id = happyhorse_conn_id
        self.kill_work: asyncio.Future[None] | None = None  # on_kill's work, once it began

    @property
    def job_id(self) -> str:
        return self.record.job_id or ""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"record": self.record.model_dump(mode="json"), "happyhorse_conn_id": self.happyhorse_conn_id},
        )

    # The seam for tests: the hook (whose transport, clock and sleep a test scripts).
    def _make_hook(self) -> HappyHorseHook:
        return HappyHorseHook(self.happyhorse_conn_id)

    def plan(self) -> WaitPlan:
        return self.record.plan()

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
        if event.status == "success" and self.record.end_task_on_success:
            # No worker runs after this event, so the trigger stores what the worker would have: the
            # result, the job id, and the extra link's URL.
            result = self.record.succeeded(event).result()
            link = shown_url(event.video_url, rule)
            xcoms = {XCOM_RESULT_KEY: result, XCOM_JOB_ID_KEY: self.job_id, HappyHorseVideoLink().xcom_key: link}
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
        """
        Airflow 3.3 calls this when a user acts on the deferred task (mark failed, mark success, clear) and also when
        it moves this trigger to another triggerer, which goes on polling the job. Where the service has a cancel
        (DashScope), the task instance's state tells the two apart (``core.kill``): on a user's kill a job still
        queued is cancelled, nothing was billed; a job already rendering is left, and billed. A move, or a state that
        cannot be read, cancels nothing; nor does a sensor's trigger (a job made elsewhere). Bounded in time: 25 s,
        within Airflow's 30 s default.

        Airflow 3.3.2's triggerer cancels the trigger's task again at each sync with its supervisor (about once a
        second) until the trigger has ended, so while this runs: a cancel here would end it silently (Airflow
        swallows it), before it said what became of the job. The work runs in a task of its own
        (``kill_work``), which those repeated cancels do not reach; this waits for it (it is bounded) and then
        ends. On Python 3.11, whose ``asyncio.wait_for`` (Airflow's bound on this) gives up on a second cancel,
        the trigger may end first: the work still finishes, and its message goes to the triggerer's own log.
        """
        work = self.kill_work = asyncio.ensure_future(self._on_kill())
        while not work.done():
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                if work.done():
                    break
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()  # the repeated cancel is answered: waiting for the bounded work
        work.result()

    async def _on_kill(self) -> None:
        hook = self._make_hook()
        loop = asyncio.get_running_loop()
        asked_until = loop.time() + STATE_QUERY_TIMEOUT  # the connection (cached, mostly) and the task's state
        try:
            settings = await asyncio.wait_for(hook.aget_settings(), STATE_QUERY_TIMEOUT)
        except Exception as error:  # the connection could not be read: nothing can be cancelled
            self.log.warning(
                "Stopped polling HappyHorse job %s here, and could not read connection %r (%s) to learn whether its "
                "service can cancel a queued job: nothing was cancelled, the job runs on the service and is billed "
                "if it renders. A new try of this task re-attaches to it.",
                self.job_id,
                self.happyhorse_conn_id,
                error,
            )
            return
        if not settings.dialect.offers_cancel:
            self.log.warning("%s", self._no_cancel())
            return
        if self.record.since is not Since.SUBMISSION:  # a sensor's: the job was made elsewhere
            self.log.warning("%s", watched_message(self.job_id))
            return
        where = settings.dialect.title
        decided = await self._kill_verdict(max(asked_until - loop.time(), 0.0))
        if decided.kind == "moved":
            self.log.warning("%s", moved_message(self.job_id, decided))
            return
        if decided.kind == "undecided":
            self.log.warning("%s", undecided_message(self.job_id, decided, where))
            return
        try:
            cancellation = await asyncio.wait_for(hook.acancel_queued_job(self.job_id), CANCEL_TIMEOUT)
        except TimeoutError:
            cancellation = timed_out_cancellation(self.job_id, where, CANCEL_TIMEOUT)
        if cancellation is None:  # the dialect offers a cancel, so the flow always builds one
            self.log.warning("%s", self._no_cancel())
            return
        self.log.warning("%s", killed_message(decided, cancellation))

    def _no_cancel(self) -> str:
        """Today's words where the service has no cancel: a kill and a move look alike and cancel nothing."""
        return (
            f"Stopped polling HappyHorse job {self.job_id} here: the task was killed, or Airflow moved this trigger "
            "to another triggerer (which goes on polling it). Nothing was cancelled: HappyHorse has no cancel "
            "endpoint, so the job runs on the service either way."
        )

    async def _kill_verdict(self, seconds: float) -> KillVerdict:
        """Killed by a user or moved: from the task instance's state, asked for within ``seconds``."""
        ti = self.task_instance
        if ti is None:
            return KillVerdict("undecided", "the trigger does not know its task instance")
        at = TaskAt(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        try:
            states = await asyncio.wait_for(self._task_states(at), seconds)
        except TimeoutError:
            return verdict(None, at, problem=f"Airflow did not answer within {STATE_QUERY_TIMEOUT:g} s")
        except Exception as error:
            return verdict(None, at, problem=f"{type(error).__name__}: {error}")
        return verdict(states, at)

    async def _task_states(self, at: TaskAt) -> Mapping[str, Any]:
        """
        Airflow's task-state query (``GetTaskStates``, as ``RuntimeTaskInstance.get_task_states`` sends it) through
        the triggerer's supervisor, asynchronously (a synchronous call from the event loop could deadlock).
        """
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
        if comms is None or not hasattr(comms, "asend"):
            raise LookupError("this triggerer offers no channel to its supervisor")
        answer = await comms.asend(GetTaskStates(**at.query()))
        if not isinstance(answer, TaskStatesResult):
            raise LookupError(f"the supervisor answered {type(answer).__name__}, not the task states")
        return answer.task_states

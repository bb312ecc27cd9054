"""
A deferred task's trigger stopped with ``on_kill`` (issue 23, item 4): Airflow 3.3 calls it for a user's kill (mark
failed, mark success, clear) and for a move to another triggerer. The task instance's state, asked of the
triggerer's supervisor (faked here at that channel, ``SUPERVISOR_COMMS.asend``), tells them apart; the service is
the DashScope fake (``support.dashscope``) or happyhorse.app's (``support.service``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

from airflow_provider_happyhorse.core.kill import KillVerdict, TaskAt, verdict
from airflow_provider_happyhorse.core.record import RenderRecord, Since
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, query_buckets
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
from support.clock import START, FakeClock
from support.dashscope import DS_HOST, TASK_ID, FakeDashScope, ds_error
from support.service import API_KEY, HOST, ConnectionSetter, FakeService, resolve

AT = TaskAt("render_dag", "manual__1", "render", -1)


class StateAnswering:
    """The triggerer's supervisor channel: answers the task-state query with ``states`` (or raises ``error``)."""

    def __init__(
        self,
        states: dict[str, Any] | None = None,
        *,
        error: Exception | None = None,
        hang: bool = False,
        gate: asyncio.Event | None = None,
    ):
        self.states = states
        self.error = error
        self.hang = hang
        self.gate = gate  # answers the state query once set
        self.asked = asyncio.Event()
        self.sent: list[Any] = []

    async def asend(self, message: Any) -> Any:
        self.sent.append(message)
        if isinstance(message, GetTaskStates):
            self.asked.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.hang:
                await asyncio.Event().wait()  # never answers: the trigger's own bound ends the wait
            if self.error is not None:
                raise self.error
            return TaskStatesResult(task_states=self.states or {})
        return None  # MaskSecret

    def send(self, message: Any) -> None:
        self.sent.append(message)

    @property
    def state_queries(self) -> list[GetTaskStates]:
        return [message for message in self.sent if isinstance(message, GetTaskStates)]


def comms_with(monkeypatch: pytest.MonkeyPatch, comms: StateAnswering | None) -> StateAnswering | None:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    return comms


def state_is(state: str | None, at: TaskAt = AT) -> dict[str, Any]:
    return {at.run_id: {at.key: state}}


def killed_trigger(
    service: FakeDashScope | FakeService, job_id: str, at: TaskAt = AT, since: Since = Since.SUBMISSION
) -> HappyHorseJobTrigger:
    clock = FakeClock()
    record = RenderRecord(
        job_id=job_id,
        since=since,
        started_at=START,
        deadline=START + timedelta(minutes=10),
        schedule=PollSchedule(first_poll_after=60.0, min_interval=5.0, max_interval=60.0),
    )
    trigger = HappyHorseJobTrigger(record=record, happyhorse_conn_id="happyhorse_default")
    transport = service.transport()
    query_buckets.clear()
    trigger._make_hook = lambda: HappyHorseHook(  # type: ignore[method-assign]
        async_transport=transport,
        resolve=resolve,
        async_sleep=clock.async_sleep,
        rng=lambda: 0.5,
        clock=clock,
        monotonic=clock.monotonic,
    )
    ti = SimpleNamespace(dag_id=at.dag_id, run_id=at.run_id, task_id=at.task_id, map_index=at.map_index)
    trigger.task_instance = ti  # type: ignore[assignment]
    return trigger


async def kill_it(trigger: HappyHorseJobTrigger, capsys: pytest.CaptureFixture[str]) -> str:
    """What ``on_kill`` logged (Airflow's structured logging writes to stdout)."""
    await trigger.on_kill()
    said = capsys.readouterr().out
    assert API_KEY not in said
    return said


# -- the decision, with no I/O -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "kind"),
    [
        (state_is("deferred"), "moved"),
        (state_is("DEFERRED"), "moved"),
        (state_is("failed"), "killed"),
        (state_is("success"), "killed"),
        (state_is(None), "killed"),  # cleared
        (state_is("scheduled"), "killed"),
        ({}, "undecided"),  # the run is not in the answer
        ({AT.run_id: {"other": "deferred"}}, "undecided"),
        ({AT.run_id: {"render_0": "deferred"}}, "undecided"),  # a mapped instance's key, not this one's
    ],
)
def test_the_task_instances_state_says_killed_or_moved(states: dict[str, Any], kind: str) -> None:
    assert verdict(states, AT).kind == kind


def test_a_mapped_instance_is_found_by_its_key() -> None:
    mapped = TaskAt("d", "r", "render", 2)
    assert mapped.key == "render_2"
    assert verdict({"r": {"render_2": "failed", "render_1": "deferred"}}, mapped).kind == "killed"
    assert mapped.query() == {"dag_id": "d", "task_ids": ["render"], "run_ids": ["r"], "map_index": 2}


def test_no_answer_is_undecided_and_says_why() -> None:
    decided = verdict(None, AT, problem="Airflow did not answer within 10 s")
    assert decided == KillVerdict("undecided", "its state could not be read: Airflow did not answer within 10 s")


# -- the trigger ---------------------------------------------------------------------------------------------------


async def test_a_moved_trigger_cancels_nothing(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    comms = comms_with(monkeypatch, StateAnswering(state_is("deferred")))
    service = FakeDashScope(statuses=["PENDING"])
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert service.requests == []  # neither a status query nor a cancel
    assert comms is not None
    [query] = comms.state_queries
    assert (query.dag_id, query.task_ids, query.run_ids, query.map_index) == (
        "render_dag",
        ["render"],
        ["manual__1"],
        -1,
    )
    assert "is still deferred, so Airflow moved this trigger to another triggerer, which goes on polling it" in said
    assert "Nothing was cancelled." in said
    assert "billed" not in said


@pytest.mark.parametrize("state", ["failed", "success", None])
async def test_a_killed_task_s_queued_job_is_cancelled_and_not_billed(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], state: str | None
) -> None:
    connection(host=DS_HOST)
    comms_with(monkeypatch, StateAnswering(state_is(state)))
    service = FakeDashScope(statuses=["PENDING"])
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert [request.url.path for request in service.cancels] == [f"/api/v1/tasks/{TASK_ID}/cancel"]
    assert service.cancels[0].method == "POST"
    assert [request.method for request in service.requests] == ["GET", "POST"]  # its status, then the cancel
    shown = "none (cleared)" if state is None else state
    assert f"The task was stopped by a user (task instance render_dag.render (run manual__1) is now {shown})" in said
    assert f"Cancelled job {TASK_ID} on Alibaba Cloud Model Studio (DashScope) while it was still queued" in said
    assert "nothing was billed" in said
    assert "submits the request again, paid once (the cancelled job was not billed)" in said


async def test_a_killed_task_s_running_job_is_left_and_billed(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    comms_with(monkeypatch, StateAnswering(state_is("failed")))
    service = FakeDashScope(statuses=["RUNNING"])
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert service.cancels == []
    assert [request.method for request in service.requests] == ["GET"]
    assert "already rendering (RUNNING)" in said
    assert "no cancel was sent, it was left running, runs to its end and will be billed" in said
    assert "nothing was billed" not in said


async def test_a_killed_task_s_ended_job_has_nothing_to_cancel(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    comms_with(monkeypatch, StateAnswering(state_is("failed")))
    service = FakeDashScope(statuses=["SUCCEEDED"])
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert service.cancels == []
    assert "had already ended (SUCCEEDED)" in said
    assert "there was nothing to cancel" in said


async def test_when_the_status_cannot_be_read_the_service_decides_the_cancel(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    comms_with(monkeypatch, StateAnswering(state_is("failed")))
    service = FakeDashScope(statuses=["RUNNING"])
    service.faults.extend([ds_error(500, "InternalError", "boom"), ds_error(400, "UnsupportedOperation")])
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert len(service.cancels) == 1  # sent: the service cancels only a queued job, and refused this one
    assert "cancels only queued jobs: it runs to its end and will be billed" in said


@pytest.mark.parametrize(
    ("comms", "why"),
    [
        (StateAnswering(error=RuntimeError("API server unreachable")), "RuntimeError: API server unreachable"),
        (StateAnswering(hang=True), "Airflow did not answer within 0.01 s"),
        (None, "this triggerer offers no channel to its supervisor"),
        (StateAnswering({}), "Airflow's answer does not hold task instance render_dag.render (run manual__1)"),
    ],
)
async def test_when_the_state_cannot_be_read_nothing_is_cancelled(
    connection: ConnectionSetter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    comms: StateAnswering | None,
    why: str,
) -> None:
    connection(host=DS_HOST)
    comms_with(monkeypatch, comms)
    monkeypatch.setattr("airflow_provider_happyhorse.triggers.happyhorse.STATE_QUERY_TIMEOUT", 0.01)
    service = FakeDashScope(statuses=["PENDING"])
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert service.requests == []
    assert "could not tell whether a user killed the task or Airflow moved this trigger" in said
    assert why in said
    assert "Nothing was cancelled, in case another triggerer still polls it" in said
    assert "billed if it renders" in said


async def test_a_cancel_with_no_answer_in_time_says_it_may_be_billed(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    comms_with(monkeypatch, StateAnswering(state_is("failed")))
    monkeypatch.setattr("airflow_provider_happyhorse.triggers.happyhorse.CANCEL_TIMEOUT", 0.01)
    trigger = killed_trigger(FakeDashScope(), TASK_ID)

    async def never(job_id: str) -> None:
        await asyncio.Event().wait()

    hook = trigger._make_hook()
    hook.acancel_queued_job = never  # type: ignore[assignment,method-assign]
    trigger._make_hook = lambda: hook  # type: ignore[method-assign]
    said = await kill_it(trigger, capsys)
    assert f"Could not learn whether job {TASK_ID} was still queued, or cancel it" in said
    assert "within 0.01 s: it may run to its end and be billed" in said


@pytest.mark.parametrize("state", ["failed", "deferred"])
async def test_happyhorse_app_keeps_today_s_message_and_asks_nothing(
    connection: ConnectionSetter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    state: str,
) -> None:
    connection(host=HOST)
    comms = comms_with(monkeypatch, StateAnswering(state_is(state)))
    service = FakeService(FakeClock())
    said = await kill_it(killed_trigger(service, service.job_id), capsys)
    assert service.requests == []
    assert comms is not None
    assert comms.state_queries == []
    assert "the task was killed, or Airflow moved this trigger to another triggerer (which goes on polling it)" in said
    assert "Nothing was cancelled: HappyHorse has no cancel endpoint" in said


async def test_a_sensor_s_trigger_never_cancels_the_job_it_watches(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    comms = comms_with(monkeypatch, StateAnswering(state_is("failed")))
    service = FakeDashScope(statuses=["PENDING"])
    said = await kill_it(killed_trigger(service, TASK_ID, since=Since.SENSOR_BEGAN_WAITING), capsys)
    assert service.requests == []
    assert comms is not None
    assert comms.state_queries == []
    assert "Nothing was cancelled: a sensor watches a job made elsewhere and never cancels it." in said


async def test_an_unreadable_connection_cancels_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", raising=False)
    comms_with(monkeypatch, StateAnswering(state_is("failed")))
    service = FakeDashScope()
    said = await kill_it(killed_trigger(service, TASK_ID), capsys)
    assert service.requests == []
    assert "could not read connection 'happyhorse_default'" in said
    assert "nothing was cancelled" in said


# -- Airflow 3.3.2 cancels the trigger's task again at each sync while on_kill runs -----------------------------


async def test_repeated_cancels_while_on_kill_runs_do_not_cut_it_short(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    gate = asyncio.Event()
    comms = comms_with(monkeypatch, StateAnswering(state_is("failed"), gate=gate))
    assert comms is not None
    service = FakeDashScope(statuses=["PENDING"])
    killing = asyncio.create_task(killed_trigger(service, TASK_ID).on_kill())
    await comms.asked.wait()  # on_kill waits for Airflow's answer...
    for _ in range(3):  # ...while the triggerer cancels the trigger's task again, once a sync
        killing.cancel("user-action")
        await asyncio.sleep(0)
    gate.set()
    await killing
    assert len(service.cancels) == 1
    assert "nothing was billed" in capsys.readouterr().out


async def test_when_airflow_s_bound_gives_up_on_kill_s_work_still_ends(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(host=DS_HOST)
    gate = asyncio.Event()
    comms = comms_with(monkeypatch, StateAnswering(state_is("failed"), gate=gate))
    assert comms is not None
    service = FakeDashScope(statuses=["PENDING"])
    trigger = killed_trigger(service, TASK_ID)
    # As run_trigger calls it: inside asyncio.wait_for, in the trigger's task, cancelled once a sync.
    airflow = asyncio.create_task(asyncio.wait_for(trigger.on_kill(), timeout=30))
    await comms.asked.wait()
    for _ in range(3):
        airflow.cancel("user-action")
        await asyncio.sleep(0)
    gate.set()
    with contextlib.suppress(asyncio.CancelledError):
        await airflow  # Python 3.11's wait_for gave up at the second cancel (3.12's waits): the work goes on
    assert trigger.kill_work is not None
    await trigger.kill_work
    assert len(service.cancels) == 1
    assert "nothing was billed" in capsys.readouterr().out


# -- what a cleared task does next ---------------------------------------------------------------------------------


async def test_a_cleared_task_after_its_kill_cancel_submits_anew_and_says_it_is_paid_once(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_happyhorse.job_store import JobRecordStore
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from support.context import DictStore, make_context

    connection(host=DS_HOST)
    service = FakeDashScope(statuses=["PENDING"])
    store = DictStore()
    clock = FakeClock()

    def operator() -> GenerateVideoOperator:
        task = GenerateVideoOperator(task_id="render", prompt="a horse", resolution="720P", deferrable=True)
        transport = service.transport()
        task.hook = HappyHorseHook(  # type: ignore[misc]
            transport=transport, resolve=resolve, sleep=clock.sleep, rng=lambda: 0.5, clock=clock
        )
        return task

    # The first try submits and defers; its job is still queued when a user clears the deferred task.
    with pytest.raises(TaskDeferred) as deferred:
        await asyncio.to_thread(operator().execute, make_context(store))
    first = deferred.value.trigger
    assert isinstance(first, HappyHorseJobTrigger)
    trigger = killed_trigger(service, TASK_ID)
    trigger.record = first.record
    comms_with(monkeypatch, StateAnswering(state_is(None)))  # cleared: no state
    said = await kill_it(trigger, capsys)
    assert len(service.cancels) == 1
    assert "nothing was billed" in said
    assert store.values[JobRecordStore.key]["job_id"] == TASK_ID  # the kept job id, for the new try
    # The new try reads the kept job: CANCELED, so it submits the request again (paid once) and defers on that.
    service.statuses = ["CANCELED", "PENDING"]
    with pytest.raises(TaskDeferred):
        await asyncio.to_thread(operator().execute, make_context(store))
    assert len(service.creates) == 2
    logged = capsys.readouterr().out
    assert (
        f"Job {TASK_ID} from an earlier try was cancelled (CANCELED) while it was queued, so it was not billed: "
        "submitting the request again, which is paid once" in logged
    )
    assert "Re-attached" not in logged


# -- an Airflow whose triggerer calls no trigger on_kill (3.0.6) -------------------------------------------------


@pytest.mark.parametrize(
    ("host", "calls_on_kill", "warned"),
    [(DS_HOST, False, True), (DS_HOST, True, False), (HOST, False, False)],
)
def test_deferring_says_when_a_kill_cannot_cancel_the_job(
    connection: ConnectionSetter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    host: str,
    calls_on_kill: bool,
    warned: bool,
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_happyhorse.operators import happyhorse as operators
    from support.context import DictStore, make_context

    connection(host=host)
    monkeypatch.setattr(operators, "triggerer_calls_on_kill", lambda: calls_on_kill)
    service: FakeDashScope | FakeService = FakeDashScope() if host == DS_HOST else FakeService(FakeClock())
    clock = FakeClock()
    task = operators.GenerateVideoOperator(task_id="render", prompt="a horse", duration=5, deferrable=True)
    task.hook = HappyHorseHook(  # type: ignore[misc]
        transport=service.transport(), resolve=resolve, sleep=clock.sleep, rng=lambda: 0.5, clock=clock
    )
    with pytest.raises(TaskDeferred):
        task.execute(make_context(DictStore()))
    said = capsys.readouterr().out
    assert ("This Airflow's triggerer calls no on_kill for a trigger" in said) is warned
    if warned:
        assert "is not cancelled, and runs on (billed if it renders)" in said
        assert "run the task with deferrable=False, or use Airflow 3.3+" in said


def test_the_triggerer_calls_on_kill_from_airflow_3_3_and_not_on_3_0() -> None:
    from airflow import __version__
    from packaging.version import Version

    from airflow_provider_happyhorse.triggers.happyhorse import triggerer_calls_on_kill

    # Read in each one's triggerer_job_runner.py: 3.3.2 invokes on_kill on a user's action; 3.0.6 never does.
    version = Version(__version__)
    if version.release[:2] == (3, 0):
        assert triggerer_calls_on_kill() is False
    elif version >= Version("3.3"):
        assert triggerer_calls_on_kill() is True
    else:
        pytest.skip(f"Airflow {version}: its triggerer was not read")

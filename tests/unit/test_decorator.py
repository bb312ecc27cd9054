"""``@task.happyhorse``: the function returns the request; validation, payment and re-attach are the operator's."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred
from airflow.sdk import DAG, task

from airflow_provider_happyhorse.decorators.happyhorse import (
    REQUEST_XCOM_KEY,
    HappyHorseDecoratedOperator,
    happyhorse_task,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from support.clock import FakeClock
from support.context import DictStore, FakeTI, make_context
from support.service import CONN_JSON, FakeService, resolve

START = datetime(2026, 11, 1)


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


class PullingTI(FakeTI):
    """A task instance that also reads back what this task instance pushed (as Airflow keeps it on resume)."""

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index)
        return self.xcoms.get(key)


def context_with(store: DictStore, ti: FakeTI | None = None) -> dict[str, Any]:
    context = make_context(store)
    context["ti"] = ti or PullingTI()
    return context


def build(service: FakeService, function: Any, *args: Any, **operator_kwargs: Any) -> HappyHorseDecoratedOperator:
    """The operator ``@task.happyhorse(**operator_kwargs)`` makes of ``function(*args)``, on the fake service."""
    with DAG("taskflow", schedule=None, start_date=START):
        operator = happyhorse_task(task_id="video", **operator_kwargs)(function)(*args).operator
    assert isinstance(operator, HappyHorseDecoratedOperator)
    operator.hook = HappyHorseHook(  # type: ignore[misc]
        "happyhorse_default",
        transport=service.transport(),
        resolve=resolve,
        sleep=service.clock.sleep,
        clock=service.clock,
        rng=lambda: 0.5,
    )
    return operator


def clip_request(prompt: str) -> dict[str, Any]:
    return {"prompt": prompt, "mode": "pro", "duration": 6, "sound": False}


def test_task_happyhorse_is_registered_through_the_provider_info() -> None:
    # Airflow's providers manager reads task-decorators from get_provider_info (entry point apache_airflow_provider).
    assert task.happyhorse is happyhorse_task


def test_the_decorator_builds_the_operator_with_its_arguments() -> None:
    with DAG("taskflow", schedule=None, start_date=START):

        @task.happyhorse(output_path="file:///clips/{{ ds }}.mp4", max_credits=500, happyhorse_conn_id="hh", retries=2)
        def render(prompt: str) -> dict[str, Any]:  # a Mapping return would turn multiple_outputs on for @task
            return {"prompt": prompt}

        operator = render("a horse").operator
    assert isinstance(operator, GenerateVideoOperator)
    assert operator.task_id == "render"
    assert (operator.output_path, operator.max_credits, operator.happyhorse_conn_id) == (
        "file:///clips/{{ ds }}.mp4",
        500,
        "hh",
    )
    assert operator.retries == 2
    assert operator.multiple_outputs is False  # the XCom is the result, one value
    assert operator.op_args == ("a horse",)
    # The request comes from the function, not from templates; the operator's other fields stay templated.
    assert set(operator.template_fields) == {"op_args", "op_kwargs", "output_path"}


def test_request_arguments_belong_to_the_function_not_the_decorator() -> None:
    refused = r"@task.happyhorse\(duration=\.\.\., prompt=\.\.\.\): the request is what"
    with pytest.raises(TypeError, match=refused), DAG("taskflow", schedule=None, start_date=START):
        happyhorse_task(prompt="x", duration=5)(lambda: {})()
    with pytest.raises(TypeError, match=r"@task.happyhorse\(mode=\.\.\.\): the request is what the decorated function"):
        happyhorse_task(mode="pro")  # refused when decorating: a mapped task's operator is built only at run time
    with pytest.raises(TypeError, match="multiple_outputs"):
        happyhorse_task(multiple_outputs=True)


@pytest.mark.parametrize("returned", [clip_request("a horse at dawn"), VideoRequest(**clip_request("a horse at dawn"))])
def test_the_returned_request_is_submitted_once_and_deferred(returned: Any) -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    context = context_with(store)
    operator = build(service, lambda: returned)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    expected = VideoRequest(prompt="a horse at dawn", mode="pro", duration=6, sound=False)
    assert service.posts == 1
    assert json.loads(service.requests[0].content) == expected.to_body()
    record = deferred.value.trigger.serialize()[1]["record"]
    assert record["request"] == expected.to_body()
    assert deferred.value.trigger.record.credits_estimate == 54 * 6  # pro, silent: 54 credits a second
    assert store.values["happyhorse_job"]["fingerprint"] == expected.fingerprint()
    assert context["ti"].xcoms[REQUEST_XCOM_KEY] == expected.to_body()
    assert context["ti"].xcoms["job_id"] == service.job_id


def test_the_function_gets_its_arguments_and_the_context() -> None:
    seen: dict[str, Any] = {}

    def render(prompt: str, ds: str | None = None) -> dict[str, Any]:
        seen.update(prompt=prompt, ds=ds)
        return {"prompt": f"{prompt} on {ds}"}

    service = FakeService(FakeClock())
    context = context_with(DictStore())
    context["ds"] = "2026-11-01"
    with pytest.raises(TaskDeferred) as deferred:
        build(service, render, "a horse").execute(context)
    assert seen == {"prompt": "a horse", "ds": "2026-11-01"}
    assert deferred.value.trigger.serialize()[1]["record"]["request"]["prompt"] == "a horse on 2026-11-01"


@pytest.mark.parametrize(
    ("returned", "named"),
    [
        ({"prompt": "a horse", "duration": 20}, "duration: Input should be less than or equal to 15 (got 20)"),
        ({"prompt": "a horse", "output_path": "/tmp/x.mp4"}, "'output_path' is not a request argument"),
        ({"duration": 5}, "prompt: required unless multi_shots is true"),
        ("a horse", "returns a dict of request arguments or a VideoRequest, not str"),
        (None, "not NoneType"),
    ],
)
def test_a_bad_request_is_refused_before_anything_is_sent(returned: Any, named: str) -> None:
    service = FakeService(FakeClock())
    context = context_with(DictStore())

    def make_request() -> Any:
        return returned

    with pytest.raises(AirflowFailException) as refused:
        build(service, make_request).execute(context)
    assert named in str(refused.value)
    assert str(refused.value).endswith("(returned by make_request()). Nothing was submitted.")
    assert service.requests == []  # not a status read, not a submission
    assert REQUEST_XCOM_KEY not in context["ti"].xcoms


@pytest.mark.parametrize(
    ("returned", "named"),
    [
        ({"prompt": "a horse", "aspect_ratio": "4:3"}, "aspect_ratio: happyhorse.app takes '16:9', '9:16' or '1:1'"),
        ({"prompt": "p" * 2501}, "prompt: happyhorse.app takes at most 2500 characters (got 2,501 characters)"),
    ],
)
def test_a_request_the_connections_service_does_not_take_is_refused_before_anything_is_sent(
    returned: dict[str, Any], named: str
) -> None:
    """The model takes DashScope's ratios and prompt length; the connection (happyhorse.app) refuses them."""
    service = FakeService(FakeClock())
    store = DictStore()
    with pytest.raises(AirflowFailException) as refused:
        build(service, lambda: returned).execute(context_with(store))
    assert named in str(refused.value)
    assert str(refused.value).endswith("Nothing was submitted.")
    assert service.requests == []
    assert store.values == {}  # no pending marker: refused before anything is written


def test_a_request_over_max_credits_is_refused_before_anything_is_sent() -> None:
    service = FakeService(FakeClock())
    operator = build(service, lambda: clip_request("a horse"), max_credits=300)
    with pytest.raises(AirflowFailException, match="the estimate for this video is 324 credits, above the limit 300"):
        operator.execute(context_with(DictStore()))
    assert service.requests == []


def test_a_retry_re_attaches_to_the_job_its_request_paid_for() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    with pytest.raises(TaskDeferred):
        build(service, lambda: clip_request("a horse")).execute(context_with(store))
    # The next try runs the function again (a new operator, as on a new worker): the same request re-attaches.
    with pytest.raises(TaskDeferred) as deferred:
        build(service, lambda: clip_request("a horse")).execute(context_with(store))
    assert deferred.value.trigger.serialize()[1]["record"]["job_id"] == service.job_id
    assert service.posts == 1
    # A changed request is a new video: it is paid for.
    with pytest.raises(TaskDeferred):
        build(service, lambda: clip_request("a zebra")).execute(context_with(store))
    assert service.posts == 2


def test_after_deferral_a_new_worker_finishes_with_the_request_the_function_returned() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    ti = PullingTI()
    calls: list[str] = []

    def render() -> dict[str, Any]:
        calls.append("render")
        return clip_request("a horse")

    with pytest.raises(TaskDeferred):
        build(service, render).execute(context_with(store, ti))
    event = {
        "status": "success",
        "job_id": service.job_id,
        "job_status": "SUCCESS",
        "video_url": "http://hh.test/v.mp4",
        "finished_at": "2026-01-01T12:01:00+00:00",
    }
    result = build(service, render).execute_complete(context_with(store, ti), event)
    assert calls == ["render"]  # not run again on resume
    assert result["request"] == VideoRequest(**clip_request("a horse")).to_body()
    assert result["credits_estimate"] == 324
    assert result["video_url"] == "http://hh.test/v.mp4"
    assert service.posts == 1


def test_a_resume_without_the_request_fails_naming_the_xcom() -> None:
    service = FakeService(FakeClock())
    event = {"status": "success", "job_id": service.job_id, "finished_at": "2026-01-01T12:01:00+00:00"}
    with pytest.raises(AirflowFailException, match="The XCom 'request' of this task instance"):
        build(service, lambda: {}).execute_complete(context_with(DictStore()), event)


def test_expand_maps_over_the_functions_arguments() -> None:
    with DAG("taskflow", schedule=None, start_date=START) as dag:

        @task.happyhorse(output_path="file:///clips/{{ ti.map_index }}.mp4", max_active_tis_per_dag=2)
        def render(prompt: str, duration: float) -> dict[str, Any]:
            return {"prompt": prompt, "duration": duration}

        render.partial(duration=4).expand(prompt=["a", "b", "c"])
    mapped = dag.get_task("render")
    assert mapped.operator_class is HappyHorseDecoratedOperator
    assert mapped.partial_kwargs["op_kwargs"] == {"duration": 4}
    assert mapped.partial_kwargs["output_path"] == "file:///clips/{{ ti.map_index }}.mp4"
    assert mapped.max_active_tis_per_dag == 2
    assert mapped.op_kwargs_expand_input.value == {"prompt": ["a", "b", "c"]}

"""GenerateVideoOperator: validation before paying, submission once, deferral, and durable re-attach."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.job_store import JobRecordStore
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
from support.clock import START, FakeClock
from support.context import DictStore, make_context
from support.service import API_KEY, CONN_JSON, FakeService, fail, reply, resolve

HAS_NEVER_EXPIRE = hasattr(importlib.import_module("airflow.sdk.execution_time.context"), "NEVER_EXPIRE")


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def make_operator(service: FakeService, **kwargs: Any) -> GenerateVideoOperator:
    params: dict[str, Any] = {"task_id": "video", "prompt": "a horse on a beach at dawn", "duration": 5}
    params.update(kwargs)
    operator = GenerateVideoOperator(**params)
    # The hook is the operator's only way out: give it the scripted service as its transport.
    operator.hook = HappyHorseHook(  # type: ignore[misc]
        "happyhorse_default",
        transport=service.transport(),
        resolve=resolve,
        sleep=service.clock.sleep,
        clock=service.clock,
        rng=lambda: 0.5,
    )
    return operator


def test_init_only_assigns_and_does_no_io() -> None:
    # No connection exists for this id: construction must not look it up, nor validate.
    operator = GenerateVideoOperator(task_id="t", prompt="x" * 5000, happyhorse_conn_id="missing", duration=99)
    assert operator.prompt == "x" * 5000
    assert operator.duration == 99
    assert operator.deferrable is None  # decided when the task runs: as the deployment says


def test_defers_with_exact_trigger_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeService(FakeClock())
    monkeypatch.setattr("airflow_provider_happyhorse.operators.happyhorse.utcnow", service.clock)
    store = DictStore()
    context = make_context(store)
    operator = make_operator(service, mode="pro", duration=10, sound=True, poll_interval=15, max_poll_interval=90)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, HappyHorseJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger"
    started_at = START.isoformat()
    request = VideoRequest(prompt="a horse on a beach at dawn", mode="pro", duration=10, sound=True)
    assert kwargs == {
        "happyhorse_conn_id": "happyhorse_default",
        "record": {
            "fingerprint": request.fingerprint(),
            "request": {
                "model": "happyhorse-1.0/video",
                "prompt": "a horse on a beach at dawn",
                "mode": "pro",
                "duration": 10,
                "aspect_ratio": "16:9",
                "sound": True,
                "cfg_scale": 0.5,
                "multi_shots": False,
            },
            "job_id": service.job_id,
            "started_at": started_at,
            "since": "submission",
            # The documented default timeout (1 hour) from the moment of submission.
            "deadline": (START + timedelta(hours=1)).isoformat(),
            "schedule": {
                # The earliest likely finish (10% before the expected 90 s) plus 2 s + 10% of it.
                "first_poll_after": (20 + 3 * 10) * 1.5 * 1.2 * 0.9 * 1.1 + 2,
                "min_interval": 15,
                "max_interval": 90,
                "growth": 0.1,
                "slack": 2.0,
                "jitter": 0.1,
                "tick": 1.0,
            },
            "end_task_on_success": True,
            "status": None,
            "video_url": None,
            "finished_at": None,
            "stored": None,
        },
    }
    assert API_KEY not in repr(kwargs)
    assert service.posts == 1
    assert context["ti"].xcoms["job_id"] == service.job_id
    assert store.values["happyhorse_job"]["job_id"] == service.job_id


def test_execution_timeout_shortens_the_trigger_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeService(FakeClock())
    monkeypatch.setattr("airflow_provider_happyhorse.operators.happyhorse.utcnow", service.clock)
    operator = make_operator(service, timeout=timedelta(hours=2), execution_timeout=timedelta(minutes=3))
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(DictStore()))
    record = deferred.value.trigger.serialize()[1]["record"]
    assert record["started_at"] == START.isoformat()
    assert record["deadline"] == (START + timedelta(minutes=3)).isoformat()


def test_output_path_keeps_a_worker_step_after_success() -> None:
    service = FakeService(FakeClock())
    operator = make_operator(service, output_path="file:///tmp/clip.mp4")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(DictStore()))
    assert deferred.value.trigger.serialize()[1]["record"]["end_task_on_success"] is False


# -- deferrable=None: as the deployment says, else True --------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "defers"),
    [
        ({}, True),  # nothing set: the provider's promise
        ({"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False"}, False),
        ({"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "true"}, True),
    ],
)
def test_deferrable_none_follows_the_deployments_default_deferrable(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], defers: bool
) -> None:
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    service = FakeService(FakeClock())
    operator = make_operator(service)
    if defers:
        with pytest.raises(TaskDeferred):
            operator.execute(make_context(DictStore()))
        assert service.status_calls == 0
    else:
        assert operator.execute(make_context(DictStore()))["status"] == "SUCCESS"  # waited on the worker
        assert service.status_calls > 0


@pytest.mark.parametrize(("written", "defers"), [("False", True), ("false", True), ("True", True)])
def test_default_deferrable_in_airflow_cfg_cannot_turn_the_promise_off(
    monkeypatch: pytest.MonkeyPatch, written: str, defers: bool
) -> None:
    # Airflow writes default_deferrable = False into every airflow.cfg it generates: a False there cannot
    # be told from one nobody chose, so only the environment variable (or deferrable=False) turns waiting
    # on the worker on.
    import configparser

    from airflow.providers.common.compat.sdk import conf

    from airflow_provider_happyhorse.render import default_deferrable

    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    had = configparser.ConfigParser.has_option(conf, "operators", "default_deferrable")
    saved = configparser.ConfigParser.get(conf, "operators", "default_deferrable") if had else None
    conf.set("operators", "default_deferrable", written)
    try:
        assert conf.as_dict(display_source=True, display_sensitive=True)["operators"]["default_deferrable"] == (
            written,
            "airflow.cfg",
        )
        assert default_deferrable() is defers
    finally:
        if saved is not None:
            conf.set("operators", "default_deferrable", saved)
        else:
            conf.remove_option("operators", "default_deferrable", remove_default=False)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"prompt": None}, "prompt: required unless multi_shots"),
        # happyhorse.app's own rules, from the connection's dialect (the model takes 5000 and five ratios).
        ({"prompt": "x" * 2501}, "prompt: happyhorse.app takes at most 2500 characters (got 2,501 characters)"),
        ({"duration": 16}, "duration: Input should be less than or equal to 15"),
        ({"duration": 2}, "duration: Input should be greater than or equal to 3"),
        ({"mode": "ultra"}, "mode: Input should be 'std' or 'pro'"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio: happyhorse.app takes '16:9', '9:16' or '1:1' (got '4:3')"),
        ({"aspect_ratio": "16x9"}, "aspect_ratio: Input should be '16:9', '9:16', '1:1', '4:3' or '3:4'"),
        ({"cfg_scale": 1.5}, "cfg_scale: Input should be less than or equal to 1"),
        ({"image_urls": ["ftp://x/a.png"]}, "image_urls: Value error, item 0 must be an http(s) URL"),
        ({"image_urls": ["https://a/1.png"] * 3}, "image_urls: single-shot takes at most 2 images"),
        ({"multi_shots": True, "prompt": None}, "multi_prompt: required"),
    ],
)
def test_bad_input_fails_naming_field_and_rule_without_any_request(overrides: dict[str, Any], named: str) -> None:
    service = FakeService(FakeClock())
    operator = make_operator(service, **overrides)
    with pytest.raises(AirflowFailException) as failure:
        operator.execute(make_context(DictStore()))
    assert named.replace("Value error, ", "") in str(failure.value)
    assert service.requests == []


def test_max_credits_refuses_before_submitting() -> None:
    service = FakeService(FakeClock())
    operator = make_operator(service, mode="pro", duration=10, sound=True, max_credits=500)
    with pytest.raises(AirflowFailException, match=r"max_credits: the estimate for this video is 800 credits"):
        operator.execute(make_context(DictStore()))
    assert service.requests == []


# -- durable re-attach: the four cases, in deferrable and blocking mode --------------------------------


def previous_try(service: FakeService, store: DictStore) -> None:
    """An earlier try that submitted and then died (its XCom is gone; the store is not)."""
    with pytest.raises(TaskDeferred):
        make_operator(service).execute(make_context(store))
    assert service.posts == 1


def test_first_try_submits_and_persists_job_id_before_deferring() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    previous_try(service, store)
    record = store.values[JobRecordStore.key]
    assert record["job_id"] == service.job_id
    assert record["fingerprint"] == VideoRequest(prompt="a horse on a beach at dawn").fingerprint()


@pytest.mark.skipif(not HAS_NEVER_EXPIRE, reason="task state store retention (NEVER_EXPIRE) arrived in Airflow 3.3")
def test_job_record_never_expires() -> None:
    from airflow.sdk.execution_time.context import NEVER_EXPIRE

    store = DictStore()
    previous_try(FakeService(FakeClock()), store)
    assert store.retentions[JobRecordStore.key] is NEVER_EXPIRE


@pytest.mark.parametrize("deferrable", [True, False])
def test_retry_with_running_job_reattaches_without_submitting(deferrable: bool) -> None:
    service = FakeService(FakeClock(), finish_after=120.0)
    store = DictStore()
    previous_try(service, store)
    operator = make_operator(service, deferrable=deferrable, first_poll_after=60, poll_interval=10)
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(make_context(store))
        assert deferred.value.trigger.serialize()[1]["record"]["job_id"] == service.job_id
    else:
        result = operator.execute(make_context(store))
        assert result["job_id"] == service.job_id
        assert result["status"] == "SUCCESS"
    assert service.posts == 1


@pytest.mark.parametrize("deferrable", [True, False])
def test_retry_with_succeeded_job_finishes_without_submitting(deferrable: bool) -> None:
    service = FakeService(FakeClock(), finish_after=0.0)
    store = DictStore()
    previous_try(service, store)
    context = make_context(store)
    result = make_operator(service, deferrable=deferrable).execute(context)
    assert result["job_id"] == service.job_id
    assert result["video_url"] == f"http://hh.test/files/{service.job_id}.mp4"
    assert result["request"]["prompt"] == "a horse on a beach at dawn"
    assert context["ti"].xcoms["job_id"] == service.job_id
    assert service.posts == 1


@pytest.mark.parametrize("deferrable", [True, False])
def test_retry_with_failed_job_submits_anew(deferrable: bool) -> None:
    service = FakeService(FakeClock(), finish_after=0.0, final_status="FAILED")
    store = DictStore()
    previous_try(service, store)
    service.final_status = "FAILED"
    operator = make_operator(service, deferrable=deferrable)
    if deferrable:
        with pytest.raises(TaskDeferred):
            operator.execute(make_context(store))
    else:
        # The new job fails too in this script; what matters is that it was submitted.
        with pytest.raises(AirflowException, match="content policy violation"):
            operator.execute(make_context(store))
    assert service.posts == 2


def test_changed_request_is_not_reattached() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    previous_try(service, store)
    with pytest.raises(TaskDeferred):
        make_operator(service, prompt="a different clip").execute(make_context(store))
    assert service.posts == 2


@pytest.mark.parametrize(
    "fault",
    [fail(httpx.ReadTimeout), fail(httpx.RemoteProtocolError), reply(502, "bad gateway")],
)
def test_outcome_unknown_fails_then_the_retry_refuses_to_pay_again(fault: Any) -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    service.faults.append(fault)
    with pytest.raises(AirflowException, match="outcome is unknown") as first:
        make_operator(service).execute(make_context(store))
    assert not isinstance(first.value, AirflowFailException)  # the retry decides, see below
    assert service.posts == 1
    with pytest.raises(AirflowFailException, match="outcome is unknown"):
        make_operator(service).execute(make_context(store))
    assert service.posts == 1


def test_surely_not_created_submission_clears_the_marker() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    service.faults.extend([fail(httpx.ConnectError)] * 4)  # every attempt the policy allows
    with pytest.raises(AirflowException, match="ConnectError"):
        make_operator(service).execute(make_context(store))
    assert service.posts == 4
    assert JobRecordStore.key not in store.values
    with pytest.raises(TaskDeferred):
        make_operator(service).execute(make_context(store))


@pytest.mark.parametrize(("status", "error"), [(401, "AuthenticationError"), (402, "AccountError")])
def test_auth_and_account_errors_fail_without_retry(status: int, error: str) -> None:
    service = FakeService(FakeClock())
    service.faults.append(reply(status, {"code": status, "message": "no"}))
    with pytest.raises(AirflowFailException, match=error):
        make_operator(service).execute(make_context(DictStore()))
    assert service.posts == 1


def test_without_task_state_store_it_warns_once_and_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    import airflow_provider_happyhorse.job_store as job_store

    job_store._warned_no_store = False
    service = FakeService(FakeClock())
    for _ in range(2):
        with pytest.raises(TaskDeferred):
            make_operator(service).execute(make_context(None))
    assert capsys.readouterr().out.count("no task state store") == 1
    assert service.posts == 2


# -- back on the worker after the trigger --------------------------------------------------------------


def test_execute_complete_success_returns_result() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    previous_try(service, store)
    event = {
        "status": "success",
        "job_id": service.job_id,
        "job_status": "SUCCESS",
        "video_url": "http://hh.test/v.mp4",
        "finished_at": "2026-01-01T12:01:00+00:00",
        "polls": 1,
        "transient_errors": 0,
    }
    result = make_operator(service).execute_complete(make_context(store), event)
    assert result["video_url"] == "http://hh.test/v.mp4"
    assert result["finished_at"] == "2026-01-01T12:01:00+00:00"
    assert result["submitted_at"] == store.values["happyhorse_job"]["started_at"]  # the submission
    assert result["credits_estimate"] == 300


AT = "2026-01-01T12:01:00+00:00"


@pytest.mark.parametrize(
    ("event", "exc_type", "text"),
    [
        (
            {"status": "failed", "job_id": "j1", "finished_at": AT, "job_status": "FAILED", "message": "nsfw"},
            AirflowException,
            "j1",
        ),
        (
            {"status": "timeout", "job_id": "j2", "finished_at": AT, "deadline": "2026-01-01T13:00:00+00:00"},
            AirflowException,
            "deadline",
        ),
        (
            {
                "status": "error",
                "job_id": "j3",
                "finished_at": AT,
                "error_type": "AuthenticationError",
                "permanent": True,
                "message": "bad key",
            },
            AirflowFailException,
            "bad key",
        ),
        (
            {"status": "error", "job_id": "j4", "finished_at": AT, "error_type": "NotFoundError", "message": "gone"},
            AirflowException,
            "j4",
        ),
        (  # the decision travels in the event: a class name alone decides nothing
            {"status": "error", "job_id": "j5", "finished_at": AT, "error_type": "InvalidRequestError", "message": "x"},
            AirflowException,
            "j5",
        ),
    ],
)
def test_execute_complete_failures_raise_with_job_id(event: dict[str, Any], exc_type: type, text: str) -> None:
    service = FakeService(FakeClock())
    with pytest.raises(exc_type) as raised:
        make_operator(service).execute_complete(make_context(DictStore()), event)
    assert text in str(raised.value)
    assert event["job_id"] in str(raised.value)
    if exc_type is AirflowException:
        assert not isinstance(raised.value, AirflowFailException)


def test_mapped_operator_in_a_dag_parses() -> None:
    from airflow.sdk import DAG

    with DAG(dag_id="mapped_videos", schedule=None) as dag:
        GenerateVideoOperator.partial(task_id="expand", duration=5).expand(prompt=["a", "b", "c"])
        GenerateVideoOperator.partial(task_id="expand_kwargs", mode="std").expand_kwargs(
            [{"prompt": "a", "duration": 3}, {"prompt": "b", "duration": 15, "sound": False}]
        )
    assert {task.task_id for task in dag.tasks} == {"expand", "expand_kwargs"}
    assert set(GenerateVideoOperator.template_fields) >= {"prompt", "image_urls", "multi_prompt", "output_path"}


def test_bare_task_end_payload_from_dags_test_reads_the_job_once_more() -> None:
    """`airflow dags test` hands a TaskSuccessEvent's payload ("success") back to the task."""
    service = FakeService(FakeClock(), finish_after=0.0)
    store = DictStore()
    previous_try(service, store)
    calls_before = service.status_calls
    result = make_operator(service).execute_complete(make_context(store), "success")
    assert result["job_id"] == service.job_id
    assert result["video_url"] == f"http://hh.test/files/{service.job_id}.mp4"
    assert service.status_calls == calls_before + 1
    assert service.posts == 1


# ---------------------------------------------------------------------------------------------------
# Preflight: everything refusable is refused before the pending marker and the paid request


@pytest.mark.parametrize(
    ("setup", "kwargs", "fragment"),
    [
        ("missing", {"happyhorse_conn_id": "happyhorse_typo"}, "'happyhorse_typo' is not defined. Create it"),
        ("keyless", {}, "'happyhorse_default' has no API key. Put the key"),
        (None, {"output_path": "clips/a.mp4"}, "output_path 'clips/a.mp4' is a relative path"),
        (None, {"output_path": "file://clips/a.mp4"}, "names the host 'clips'"),
        (None, {"output_path": "foo://bucket/a.mp4"}, "uses a scheme Airflow's object storage does not know"),
        (None, {"output_path": "gs://bucket/a.mp4"}, "Install apache-airflow-providers-google and gcsfs"),
        (
            None,
            {"output_path": "{tmp}/a-file/a.mp4"},
            "cannot be written: a folder on its path is a file (FileExistsError",
        ),
        (None, {"output_path": "{tmp}"}, "is a folder"),
        (None, {"on_expired": "retry"}, "on_expired: must be one of fail, regenerate (got 'retry')"),
    ],
    ids=[
        "typo in conn id",
        "no key",
        "relative",
        "file host",
        "unknown scheme",
        "no gcsfs",
        "unwritable",
        "folder",
        "on_expired",
    ],
)
def test_preflight_refuses_before_writing_or_sending_and_then_pays_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, setup: str | None, kwargs: dict[str, Any], fragment: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    kwargs = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in kwargs.items()}
    if setup == "keyless":
        monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", '{"conn_type": "happyhorse", "host": "http://hh.test"}')
    service = FakeService(FakeClock())
    store = DictStore()
    operator = make_operator(service, **kwargs)
    if setup == "missing":
        operator.hook = HappyHorseHook("happyhorse_typo", transport=service.transport(), resolve=resolve)  # type: ignore[misc]
    with pytest.raises(AirflowFailException) as refused:
        operator.execute(make_context(store))
    assert fragment in str(refused.value)
    assert str(refused.value).endswith("Nothing was submitted.") or "on_expired" in kwargs
    assert service.requests == []
    assert store.values == {}  # no pending marker: the fixed task submits
    assert not list(tmp_path.glob("**/.*happyhorse-write-check"))
    # The mistake fixed, the same task instance (same store) pays exactly once.
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    fixed = {key: value for key, value in kwargs.items() if key not in ("happyhorse_conn_id", "on_expired")}
    if "output_path" in fixed:
        fixed["output_path"] = str(tmp_path / "clips" / "a.mp4")
    with pytest.raises(TaskDeferred):
        make_operator(service, **fixed).execute(make_context(store))
    assert service.posts == 1


def test_a_writable_destination_is_checked_and_left_clean(tmp_path: Any) -> None:
    service = FakeService(FakeClock())
    destination = tmp_path / "new" / "folder" / "a.mp4"
    with pytest.raises(TaskDeferred):
        make_operator(service, output_path=f"file://{destination}").execute(make_context(DictStore()))
    assert destination.parent.is_dir()
    assert list(destination.parent.iterdir()) == []  # the write check was removed; nothing at the final path
    assert service.posts == 1


def test_the_refusal_after_an_unknown_outcome_names_the_command_and_the_ui() -> None:
    service = FakeService(FakeClock())
    store = DictStore()
    service.faults.append(fail(httpx.ReadTimeout))
    with pytest.raises(AirflowException):
        make_operator(service).execute(make_context(store))
    with pytest.raises(AirflowFailException) as refused:
        make_operator(service).execute(make_context(store))
    message = str(refused.value)
    assert "the task instance's Task State Store tab" in message
    assert (
        "`happyhorse-jobs forget --dag-id daily --run-id scheduled__2026-11-01T00:00:00+00:00 --task-id video`"
        in message
    )
    assert service.posts == 1


@pytest.mark.parametrize(
    ("fault", "retries", "fragment"),
    [
        (reply(404, {"code": 404, "message": "not found"}), False, "has no /api/generate (NotFoundError (HTTP 404)"),
        (reply(401, {"code": 401, "message": "bad key"}), False, "refused the API key (AuthenticationError"),
        (fail(httpx.ConnectError), True, "Could not reach HappyHorse at http://hh.test (connection 'happyh"),
    ],
    ids=["wrong prefix", "wrong key", "unreachable"],
)
def test_a_submission_that_created_nothing_says_where_it_went(fault: Any, retries: bool, fragment: str) -> None:
    service = FakeService(FakeClock())
    service.faults.extend([fault] * 4)
    store = DictStore()
    with pytest.raises(AirflowException) as failed:
        make_operator(service).execute(make_context(store))
    assert fragment in str(failed.value)
    assert "Nothing was created" in str(failed.value)
    assert isinstance(failed.value, AirflowFailException) is not retries  # only a network fault is worth a retry
    assert store.values == {}

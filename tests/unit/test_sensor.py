"""HappyHorseJobSensor: defers on the same trigger, pokes in blocking mode, same result shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, PokeReturnValue, TaskDeferred

from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.sensors.happyhorse import HappyHorseJobSensor
from support.clock import FakeClock
from support.context import make_context
from support.service import CLIP, CONN_JSON, FakeService, reply, resolve


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def make_sensor(service: FakeService, **kwargs: object) -> HappyHorseJobSensor:
    sensor = HappyHorseJobSensor(task_id="wait", job_id=service.job_id, poke_interval=5, timeout=600, **kwargs)
    sensor.hook = HappyHorseHook(transport=service.transport(), resolve=resolve, clock=service.clock)  # type: ignore[misc]
    return sensor


def test_defers_on_the_job_trigger_polling_at_once() -> None:
    service = FakeService(FakeClock())
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(service).execute(make_context(None))
    record = deferred.value.trigger.serialize()[1]["record"]
    assert record["job_id"] == service.job_id
    assert record["since"] == "the sensor began waiting"  # decided here, not guessed by the trigger
    assert (record["fingerprint"], record["request"]) == (None, None)
    assert record["schedule"]["first_poll_after"] == 0.0
    assert record["schedule"]["min_interval"] == 5
    assert record["end_task_on_success"] is True
    assert service.requests == []  # the worker does not poll in deferrable mode


def test_poke_mode_returns_the_same_result_shape() -> None:
    service = FakeService(FakeClock(), finish_after=0.0)
    sensor = make_sensor(service, deferrable=False)
    poked = sensor.poke(make_context(None))
    assert poked.is_done
    result = poked.xcom_value
    assert result["job_id"] == service.job_id
    assert result["video_url"] == f"http://hh.test/files/{service.job_id}.mp4"
    assert result["request"] is None


def test_poke_pending_then_failed() -> None:
    service = FakeService(FakeClock(), finish_after=60.0, final_status="FAILED")
    sensor = make_sensor(service, deferrable=False)
    assert sensor.poke(make_context(None)) is False
    service.clock.sleep(61)
    with pytest.raises(AirflowException, match="content policy violation"):
        sensor.poke(make_context(None))


def test_poke_with_a_bad_key_fails_without_retrying() -> None:
    service = FakeService(FakeClock())
    service.faults.append(reply(401, {"code": 401, "message": "invalid api key"}))
    with pytest.raises(AirflowFailException, match="AuthenticationError"):
        make_sensor(service, deferrable=False).poke(make_context(None))


def test_reschedule_mode_counts_from_the_first_poke_and_gives_up_on_an_unknown_job() -> None:
    # Each poke is a new process: the not-found grace counts from Airflow's first reschedule date.
    service = FakeService(FakeClock(), known_after=10_000.0)
    context = make_context(None)
    first_poke = service.clock.now
    context["ti"].get_first_reschedule_date = lambda ctx: first_poke
    service.clock.advance(20)
    assert make_sensor(service, deferrable=False, mode="reschedule").poke(context) is False  # within the grace
    service.clock.advance(20)
    with pytest.raises(AirflowException, match="task not found"):
        make_sensor(service, deferrable=False, mode="reschedule").poke(context)
    assert service.status_calls == 2


def test_the_sensor_keeps_the_clip_with_the_operators_probe_and_poster(tmp_path: Path) -> None:
    service = FakeService(FakeClock(), finish_after=0.0)
    destination = tmp_path / "clips" / "theirs.mp4"
    poked = make_sensor(service, deferrable=False, output_path=str(destination)).poke(make_context(None))
    assert isinstance(poked, PokeReturnValue)
    result = poked.xcom_value
    assert result["stored_path"] == f"file://{destination}"
    assert result["verified"] is True  # no request to compare: a whole video is what it must be
    assert result["media"]["has_audio"] is True
    assert sorted(p.name for p in destination.parent.iterdir()) == [
        "theirs.mp4",
        "theirs.mp4.happyhorse.json",
        "theirs.poster.jpg",
    ]
    assert destination.read_bytes() == CLIP


def test_a_deferred_sensor_with_output_path_finishes_on_a_worker(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(service, output_path=str(tmp_path / "a.mp4")).execute(make_context(None))
    assert deferred.value.trigger.serialize()[1]["record"]["end_task_on_success"] is False


def test_the_sensor_refuses_an_unusable_output_path_before_waiting(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    with pytest.raises(AirflowFailException, match="is a relative path"):
        make_sensor(service, output_path="clips/a.mp4").execute(make_context(None))
    assert service.requests == []


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "a b", "", "x" * 129])
def test_a_job_id_that_is_not_one_is_refused_before_waiting(job_id: str) -> None:
    sensor = HappyHorseJobSensor(task_id="wait", job_id=job_id)
    with pytest.raises(AirflowFailException, match="job_id: must be a HappyHorse task id"):
        sensor.execute({})  # type: ignore[arg-type]

"""The job core without HTTP: scheduling, lifecycle spelling, peak concurrency, state-file replay; and the
admin route that lists every job's timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from happyhorse_emulator import EmulatorServer
from happyhorse_emulator.config import EmulatorConfig
from happyhorse_emulator.jobs import (
    Job,
    JobStore,
    Phase,
    Refusal,
    Spelling,
    new_task_id,
    peak_concurrency,
    validate_generate_body,
)


def make_job(task_id: str, started: float, finished: float, **fields: object) -> Job:
    values: dict[str, object] = dict(
        task_id=task_id,
        api_key="k",
        created=0.0,
        started=started,
        finished=finished,
        mode="std",
        duration=5.0,
        sound=True,
        width=160,
        height=90,
        fingerprint="f",
    )
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


def test_schedule_is_fifo_over_the_slots() -> None:
    store = JobStore()
    times = []
    for _ in range(5):
        started, finished = store.schedule("k", now=0.0, render_seconds=10.0, limit=2)
        store.add(make_job(f"j{len(times)}", started, finished))
        times.append((started, finished))
    assert times == [(0, 10), (0, 10), (10, 20), (10, 20), (20, 30)]
    # Later, with free slots, a job starts at once; other keys are independent.
    assert store.schedule("k", now=35.0, render_seconds=1.0, limit=2) == (35.0, 36.0)
    assert store.schedule("other", now=0.0, render_seconds=1.0, limit=2) == (0.0, 1.0)
    # No limit: never queued.
    assert store.schedule("k", now=5.0, render_seconds=1.0, limit=None) == (20.0, 21.0)  # FIFO: not before j4
    assert peak_concurrency(list(store), now=100.0) == 2


def test_phases_and_spellings() -> None:
    job = make_job("j", started=10.0, finished=20.0, unknown_status="UPSCALING")
    assert [job.phase(t) for t in (5, 12, 25)] == [Phase.QUEUED, Phase.IN_PROGRESS, Phase.SUCCESS]
    assert [job.reported_status(t) for t in (5, 12, 16, 25)] == ["QUEUED", "UPSCALING", "IN_PROGRESS", "SUCCESS"]
    variant = make_job(
        "v", 10.0, 20.0, failure_reason="boom", spelling=Spelling("NOT_START", "COMPLETED", "CANCELLED", "error")
    )
    assert [variant.reported_status(t) for t in (5, 12, 25)] == ["NOT_START", "IN_PROGRESS", "CANCELLED"]


def test_peak_concurrency_counts_only_overlaps_up_to_now() -> None:
    jobs = [make_job("a", 0, 10), make_job("b", 10, 20), make_job("c", 5, 15), make_job("d", 50, 60)]
    assert peak_concurrency(jobs, now=30) == 2
    assert peak_concurrency([], now=30) == 0


def test_state_file_round_trip_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "state.jsonl"
    store = JobStore(str(path))
    store.add(make_job("a", 0, 10, fingerprint="x"))
    store.add(make_job("b", 0, 10, fingerprint="x", spelling=Spelling(success="COMPLETED")))
    store.close()
    path.write_text(path.read_text() + "garbage\n")

    replayed = JobStore(str(path))
    assert {job.task_id for job in replayed} == {"a", "b"}
    assert replayed.get("b") == make_job("b", 0, 10, fingerprint="x", spelling=Spelling(success="COMPLETED"))
    assert replayed.fingerprint_counts() == {("k", "x"): 2}
    # The replayed lanes still know the slots are busy until 10.
    assert replayed.schedule("k", now=1.0, render_seconds=1.0, limit=2) == (10.0, 11.0)
    replayed.clear()
    assert len(replayed) == 0
    assert path.read_text() == ""
    replayed.close()


def test_task_ids_look_like_the_contracts() -> None:
    import random

    ids = {new_task_id(random.Random(seed)) for seed in range(200)}
    assert len(ids) == 200
    for task_id in ids:
        assert len(task_id) == len("n92abc123hh10")
        assert task_id.isalnum()
        assert task_id == task_id.lower()


def test_validation_defaults() -> None:
    request = validate_generate_body({"model": "happyhorse-1.0/video", "prompt": "p"})
    assert (request.mode, request.duration, request.aspect_ratio, request.sound, request.cfg_scale) == (
        "std",
        5.0,
        "16:9",
        True,
        0.5,
    )
    with pytest.raises(Refusal) as refused:
        validate_generate_body({"model": "happyhorse-1.0/video", "prompt": "p", "duration": 1e400})
    assert refused.value.status == 400


def test_config_rejects_a_key_in_two_roles() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        EmulatorConfig(api_keys=("a",), no_credit_keys=("a",))
    assert EmulatorConfig().merged({"faults": {"faults_on": ["status"]}}).faults.faults_on == ("status",)


def test_admin_jobs_route_lists_each_jobs_timeline(api, fast: EmulatorServer) -> None:
    ok = api.submit()
    fast.configure(job_failure_rate=1.0)
    failing = api.submit()

    timelines = api.http.get("/_emulator/jobs").json()
    assert timelines == fast.jobs()
    # The outcome is fixed at creation, so it is listed before the render ends.
    assert {task_id: timeline["final_phase"] for task_id, timeline in timelines.items()} == {
        ok: "SUCCESS",
        failing: "FAILED",
    }
    for timeline in timelines.values():
        assert timeline["created"] == timeline["started"]  # no queue: two jobs, four slots
        assert timeline["finished"] - timeline["started"] == pytest.approx(0.2)

    fast.configure(admin_routes=False)
    assert api.http.get("/_emulator/jobs").status_code == 404

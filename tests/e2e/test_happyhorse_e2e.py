"""
The product on real Airflow processes (scheduler with LocalExecutor, triggerer, dag-processor,
api-server) against the emulator in its own process: the daily example DAG (clip stored, asset event,
publishing DAG) and a 20-item mapped batch.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import av
import pytest

from airflow_provider_happyhorse.emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster, TaskKey

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "dags" / "examples"
E2E_DAGS = Path(__file__).parent / "happyhorse_dags"
DAILY_DATE = datetime(2026, 11, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Finished:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    output: Path
    daily_run: str
    daily_runs: list[str]
    batch_run: str
    states: dict[TaskKey, list[str]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    dags = tmp_path_factory.mktemp("dags")
    for name in (
        "happyhorse_daily_content.py",
        "happyhorse_publish.py",
        "happyhorse_example_settings.py",
    ):
        shutil.copy(EXAMPLES / name, dags / name)
    shutil.copy(E2E_DAGS / "happyhorse_e2e_batch.py", dags)
    output = tmp_path_factory.mktemp("clips")
    # 20x faster than the service: a 5 s clip with sound renders in about 2 s.
    config = EmulatorConfig(speed=0.05, max_concurrent_per_key=None, seed=5)
    with EmulatorProcess(config) as emulator:
        connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
        env = {
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
            "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
            "HAPPYHORSE_FIRST_POLL_AFTER": "1.5",
            "HAPPYHORSE_POLL_INTERVAL": "0.5",
            # Renders here last seconds, not minutes: keep Airflow's post-deferral linger below them.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        home = tmp_path_factory.mktemp("airflow-home")
        with AirflowCluster(home, dags, env, parallelism=4) as cluster:
            with cluster.record_states() as recorder:
                try:
                    daily_run = cluster.trigger("happyhorse_daily_content", logical_date=DAILY_DATE)
                except Exception:
                    print(cluster.component_log("api-server").read_text()[-6000:])
                    raise
                batch_run = cluster.trigger("happyhorse_e2e_batch")
                assert cluster.wait_for_run("happyhorse_e2e_batch", batch_run, timeout=300) == "success"
                # The scheduler may also have started the daily DAG's own latest run: every run counts.
                for run_id in run_ids(cluster, "happyhorse_daily_content"):
                    assert cluster.wait_for_run("happyhorse_daily_content", run_id, timeout=300) == "success"
                wait_for_publish(cluster)
            states = {key: recorder.states(key) for key in recorder.history}
            daily_runs = run_ids(cluster, "happyhorse_daily_content")
            yield Finished(cluster, emulator, output, daily_run, daily_runs, batch_run, states)


def run_ids(cluster: AirflowCluster, dag_id: str) -> list[str]:
    return [run["dag_run_id"] for run in cluster.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]]


def wait_for_publish(cluster: AirflowCluster) -> None:
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = cluster.api("GET", "/dags/happyhorse_publish/dagRuns")["dag_runs"]
        if runs and all(run["state"] in ("success", "failed") for run in runs):
            logs = "\n".join(path.read_text()[-3000:] for path in cluster.task_log_files("happyhorse_publish"))
            assert [run["state"] for run in runs] == ["success"] * len(runs), logs
            return
        time.sleep(1)
    raise AssertionError("the publishing DAG did not run on the stored clip")


def generator_keys(finished: Finished) -> list[TaskKey]:
    runs = [("happyhorse_e2e_batch", finished.batch_run, "render")]
    runs += [("happyhorse_daily_content", run_id, "daily_clip") for run_id in finished.daily_runs]
    keys = []
    for dag_id, run_id, task_id in runs:
        for ti in finished.cluster.task_instances(dag_id, run_id):
            if ti.task_id == task_id:
                keys.append(TaskKey(dag_id, run_id, task_id, ti.map_index))
    return keys


def test_every_video_task_succeeded_after_sitting_in_deferred(finished: Finished) -> None:
    keys = generator_keys(finished)
    assert len(keys) == 20 + len(finished.daily_runs)
    for key in keys:
        states = finished.states.get(key, [])
        assert "deferred" in states, (key, states)
        assert states[-1] == "success", (key, states)


def test_one_paid_submission_per_video(finished: Finished) -> None:
    videos = len(generator_keys(finished))
    stats = finished.emulator.stats()
    assert stats["submissions"]["accepted"] == videos
    assert stats["duplicate_submissions"] == 0
    assert stats["jobs"]["by_state"]["SUCCESS"] == videos


def test_worker_starts_one_per_video_unless_a_clip_is_stored(finished: Finished) -> None:
    starts = finished.cluster.worker_starts()
    for key in generator_keys(finished):
        expected = 2 if key.dag_id == "happyhorse_daily_content" else 1  # the download resumes on a worker
        assert starts.get(key) == expected, (key, starts.get(key))


def test_stored_clip_has_the_requested_duration_and_was_published(finished: Finished) -> None:
    clip = finished.output / "daily" / "2026-11-01.mp4"
    with av.open(str(clip)) as container:
        assert abs(float(container.duration or 0) / av.time_base - 5) < 0.15
        assert container.streams.audio  # sound=True
    result = finished.cluster.xcom("happyhorse_daily_content", finished.daily_run, "daily_clip")
    assert result["stored_path"] == f"file://{clip}"
    manifest = json.loads(clip.with_name(clip.name + ".manifest.json").read_text())
    assert manifest["sha256"] == result["stored_sha256"]
    assert manifest["job_id"] == result["job_id"]
    assert not [p.name for p in clip.parent.iterdir() if p.name.endswith(".partial")]


def test_batch_results_and_links_come_from_the_triggerer(finished: Finished) -> None:
    for key in generator_keys(finished):
        if key.dag_id != "happyhorse_e2e_batch":
            continue
        xcoms = finished.cluster.xcoms(key.dag_id, key.run_id, key.task_id, key.map_index)
        result = xcoms["return_value"]
        assert isinstance(result, dict)  # stored as a worker would store it, not as JSON text
        assert result["status"] == "SUCCESS"
        assert xcoms["job_id"] == result["job_id"]
        assert xcoms["_link_HappyHorseVideoLink"] == result["video_url"]


def test_triggerer_event_loop_was_never_blocked(finished: Finished) -> None:
    trigger_logs = [
        path.read_text()
        for path in finished.cluster.task_log_files("happyhorse_e2e_batch")
        if "succeeded" in path.read_text() and "after submission" in path.read_text()
    ]
    assert len(trigger_logs) >= 20  # the triggers did run in this triggerer
    assert "async thread was blocked" not in finished.cluster.component_log("triggerer").read_text()


def test_the_api_key_is_nowhere(finished: Finished) -> None:
    assert finished.cluster.find_secret(finished.emulator.api_key) == []

"""
The product on real Airflow processes (scheduler with LocalExecutor, triggerer, dag-processor,
api-server) against the emulator in its own process: every example DAG as a user runs it (the daily
clip twice on one day, the batch on two days and once over its budget, image-to-video, multi-shot, the
publishing DAG on every stored clip) and a 20-item mapped batch, counting paid submissions and publish
actions per clip.
"""

from __future__ import annotations

import json
import shutil
import time
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
# A second, manual run on the same day (another logical time, the same ds).
DAILY_AGAIN = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)
# Days after the batch example's start_date (2026-11-20): a run before it has no tasks.
BATCH_DAYS = [datetime(2026, 11, 24, tzinfo=timezone.utc), datetime(2026, 11, 25, tzinfo=timezone.utc)]
# Which task of each DAG renders a video.
VIDEO_TASKS = {
    "happyhorse_e2e_batch": "render",
    "happyhorse_daily_content": "daily_clip",
    "happyhorse_batch_backfill": "render",
    "happyhorse_image_to_video": "first_to_last_frame",
    "happyhorse_multi_shot_story": "story",
}
STORED = {
    "happyhorse_daily_content",
    "happyhorse_batch_backfill",
    "happyhorse_image_to_video",
    "happyhorse_multi_shot_story",
}


@dataclass(frozen=True)
class Finished:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    output: Path
    daily_run: str
    daily_again: str
    batch_run: str
    batch_days: list[str]
    over_budget: str
    states: dict[TaskKey, list[str]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    dags = tmp_path_factory.mktemp("dags")
    for example in EXAMPLES.iterdir():
        if example.suffix in (".py", ".csv"):
            shutil.copy(example, dags / example.name)
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
            "HAPPYHORSE_IMAGE_BASE_URL": f"{emulator.base_url}/_emulator/images",
            # Renders here last seconds, not minutes: keep Airflow's post-deferral linger below them.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        home = tmp_path_factory.mktemp("airflow-home")
        with AirflowCluster(home, dags, env, parallelism=4) as cluster:
            with cluster.record_states() as recorder:
                daily_run = cluster.trigger("happyhorse_daily_content", logical_date=DAILY_DATE)
                daily_again = cluster.trigger("happyhorse_daily_content", logical_date=DAILY_AGAIN)
                batch_run = cluster.trigger("happyhorse_e2e_batch")
                batch_days = [cluster.trigger("happyhorse_batch_backfill", logical_date=day) for day in BATCH_DAYS]
                over_budget = cluster.trigger("happyhorse_batch_backfill", conf={"max_run_credits": 100})
                cluster.trigger("happyhorse_image_to_video")
                cluster.trigger("happyhorse_multi_shot_story")
                # The scheduler may also start the scheduled DAGs' own latest runs: every run counts.
                for dag_id in VIDEO_TASKS:
                    for run_id in run_ids(cluster, dag_id):
                        cluster.wait_for_run(dag_id, run_id, timeout=400)
                wait_for_publish(cluster, output)
            states = {key: recorder.states(key) for key in recorder.history}
            yield Finished(
                cluster, emulator, output, daily_run, daily_again, batch_run, batch_days, over_budget, states
            )


def run_ids(cluster: AirflowCluster, dag_id: str) -> list[str]:
    return [run["dag_run_id"] for run in cluster.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]]


def published(cluster: AirflowCluster) -> list[str]:
    """Every clip the publishing DAG's runs say they published (their return values), in order."""
    clips: list[str] = []
    for run_id in run_ids(cluster, "happyhorse_publish"):
        clips += cluster.xcom("happyhorse_publish", run_id, "publish") or []
    return clips


def wait_for_publish(cluster: AirflowCluster, output: Path) -> None:
    """Until every stored clip has its manifest and every publishing run has finished."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = cluster.api("GET", "/dags/happyhorse_publish/dagRuns")["dag_runs"]
        clips = list(output.glob("**/*.mp4"))
        manifests = [clip for clip in clips if clip.with_name(clip.name + ".manifest.json").exists()]
        if runs and len(manifests) == len(clips) and all(run["state"] in ("success", "failed") for run in runs):
            logs = "\n".join(path.read_text()[-3000:] for path in cluster.task_log_files("happyhorse_publish"))
            assert [run["state"] for run in runs] == ["success"] * len(runs), logs
            return
        time.sleep(1)
    raise AssertionError("the publishing DAG did not publish every stored clip")


def generator_keys(finished: Finished) -> list[TaskKey]:
    """Every video task instance of every run (the over-budget run and the second daily run render nothing)."""
    keys = []
    for dag_id, task_id in VIDEO_TASKS.items():
        for run_id in run_ids(finished.cluster, dag_id):
            if run_id in (finished.over_budget, finished.daily_again):
                continue
            for ti in finished.cluster.task_instances(dag_id, run_id):
                if ti.task_id == task_id:
                    keys.append(TaskKey(dag_id, run_id, task_id, ti.map_index))
    return keys


def results(finished: Finished, dag_id: str) -> list[dict]:
    return [
        finished.cluster.xcom(key.dag_id, key.run_id, key.task_id, map_index=key.map_index)
        for key in generator_keys(finished)
        if key.dag_id == dag_id
    ]


def test_every_video_task_succeeded_after_sitting_in_deferred(finished: Finished) -> None:
    keys = generator_keys(finished)
    # 20 + one daily run + two batch days of 6 + image-to-video + multi-shot, and any scheduled runs.
    assert len(keys) >= 20 + 1 + 12 + 1 + 1
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
        expected = 2 if key.dag_id in STORED else 1  # the download resumes on a worker
        assert starts.get(key) == expected, (key, starts.get(key))


def test_stored_clip_has_the_requested_duration_and_was_published(finished: Finished) -> None:
    result = finished.cluster.xcom("happyhorse_daily_content", finished.daily_run, "daily_clip")
    clip = Path(result["stored_path"].removeprefix("file://"))
    assert clip == finished.output / "daily" / "2026-11-01.mp4"
    with av.open(str(clip)) as container:
        assert abs(float(container.duration or 0) / av.time_base - 5) < 0.15
        assert container.streams.audio  # sound=True
    manifest = json.loads(clip.with_name(clip.name + ".manifest.json").read_text())
    assert manifest["sha256"] == result["stored_sha256"]
    assert manifest["job_id"] == result["job_id"]
    assert not [p.name for p in clip.parent.iterdir() if p.name.endswith(".partial")]


def test_a_second_daily_run_on_the_same_day_pays_nothing_and_keeps_the_clip(finished: Finished) -> None:
    import hashlib

    first = finished.cluster.xcom("happyhorse_daily_content", finished.daily_run, "daily_clip")
    states = {
        ti.task_id: ti.state for ti in finished.cluster.task_instances("happyhorse_daily_content", finished.daily_again)
    }
    assert states == {"not_made_yet": "success", "daily_clip": "skipped"}
    clip = Path(first["stored_path"].removeprefix("file://"))
    assert clip == finished.output / "daily" / "2026-11-01.mp4"
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == first["stored_sha256"]  # not overwritten
    # The paid submissions are counted against the rendering tasks in test_one_paid_submission_per_video.


def test_batch_days_pay_for_new_clips_only(finished: Finished) -> None:
    batch = results(finished, "happyhorse_batch_backfill")
    prompts = [result["request"]["prompt"] for result in batch]
    paths = [result["stored_path"] for result in batch]
    assert len(batch) >= 12
    assert len(set(prompts)) == len(prompts)  # no day paid for another day's clip
    assert len(set(paths)) == len(paths)
    for day, run_id in zip(BATCH_DAYS, finished.batch_days, strict=True):
        ds = day.date().isoformat()
        day_results = [
            finished.cluster.xcom("happyhorse_batch_backfill", run_id, "render", map_index=index) for index in range(6)
        ]
        assert all(ds in result["request"]["prompt"] for result in day_results)
        assert all(f"/batch/{ds}/" in result["stored_path"] for result in day_results)


def test_the_run_budget_refuses_before_any_render(finished: Finished) -> None:
    run = finished.cluster.dag_run("happyhorse_batch_backfill", finished.over_budget)
    assert run["state"] == "failed"
    states = {
        ti.task_id: ti.state
        for ti in finished.cluster.task_instances("happyhorse_batch_backfill", finished.over_budget)
    }
    assert states["check_budget"] == "failed"
    assert states.get("render") in (None, "upstream_failed")
    logs = "\n".join(
        path.read_text() for path in finished.cluster.task_log_files("happyhorse_batch_backfill", finished.over_budget)
    )
    assert "max_run_credits: the run's 6 videos are estimated at 2080 credits, above 100; nothing was submitted" in logs


def test_every_stored_clip_is_published_exactly_once(finished: Finished) -> None:
    stored = [result["stored_path"] for dag_id in STORED for result in results(finished, dag_id)]
    assert len(stored) >= 1 + 12 + 2
    assert sorted(published(finished.cluster)) == sorted(stored)


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
        if "is SUCCESS, seen by poll" in path.read_text()
    ]
    assert len(trigger_logs) >= 20  # the triggers did run in this triggerer
    assert "async thread was blocked" not in finished.cluster.component_log("triggerer").read_text()


def test_the_api_key_is_nowhere(finished: Finished) -> None:
    assert finished.cluster.find_secret(finished.emulator.api_key) == []


def test_happyhorse_jobs_shows_and_forgets_through_the_real_api(finished: Finished) -> None:
    # Last in this module: it forgets one task instance's job.
    import subprocess
    import sys

    result = finished.cluster.xcom("happyhorse_daily_content", finished.daily_run, "daily_clip")
    command = [str(Path(sys.executable).with_name("happyhorse-jobs"))]
    where = ["--dag-id", "happyhorse_daily_content", "--run-id", finished.daily_run, "--task-id", "daily_clip"]
    where += ["--api-url", f"http://127.0.0.1:{finished.cluster.port}"]

    def jobs(*args: str) -> str:
        done = subprocess.run([*command, *args, *where], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = jobs("show")
    assert f"job id:       {result['job_id']}" in shown
    assert f"stored clip:  {result['stored_path']}" in shown
    assert "Forgotten. Clear the task to submit the request anew" in jobs("forget")
    assert "no HappyHorse job is remembered; its next try submits a new one" in jobs("show")

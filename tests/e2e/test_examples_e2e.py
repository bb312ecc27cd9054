"""
Every example DAG as a user runs it, on real Airflow processes against the emulator: the daily clip twice
on one day, the batch on two days and once over its budget, image-to-video and multi-shot, and the
publishing DAG on every stored clip, counting paid submissions and publish actions per clip.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e.runs import published, results, run_ids, video_keys, wait_for_publish

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster, TaskKey

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

EXAMPLES = Path(__file__).parents[2] / "dags" / "examples"
DAILY_DATE = datetime(2026, 11, 1, tzinfo=UTC)
# A second, manual run on the same day (another logical time, the same ds).
DAILY_AGAIN = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
# Days after the batch example's start_date (2026-11-20): a run before it has no tasks.
BATCH_DAYS = [datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)]
# Which task of each DAG renders a video; all of them store their clip.
VIDEO_TASKS = {
    "happyhorse_daily_content": "daily_clip",
    "happyhorse_batch_backfill": "render",
    "happyhorse_image_to_video": "first_to_last_frame",
    "happyhorse_multi_shot_story": "story",
}


@dataclass(frozen=True)
class Finished:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    output: Path
    daily_run: str
    daily_again: str
    batch_days: list[str]
    over_budget: str
    states: dict[TaskKey, list[str]]

    def video_tasks(self) -> list[TaskKey]:
        """Every video task instance (the over-budget run and the second daily run render nothing)."""
        return video_keys(self.cluster, VIDEO_TASKS, skip_runs=(self.over_budget, self.daily_again))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    dags = tmp_path_factory.mktemp("dags")
    for example in EXAMPLES.iterdir():
        if example.suffix in (".py", ".csv"):
            shutil.copy(example, dags / example.name)
    output = tmp_path_factory.mktemp("clips")
    config = EmulatorConfig(speed=0.05, max_concurrent_per_key=None, seed=11)
    with EmulatorProcess(config) as emulator:
        connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
        env = {
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
            "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
            "HAPPYHORSE_FIRST_POLL_AFTER": "1.5",
            "HAPPYHORSE_POLL_INTERVAL": "0.5",
            "HAPPYHORSE_IMAGE_BASE_URL": f"{emulator.base_url}/_emulator/images",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        with AirflowCluster(tmp_path_factory.mktemp("airflow-home"), dags, env, parallelism=4) as cluster:
            with cluster.record_states() as recorder:
                daily_run = cluster.trigger("happyhorse_daily_content", logical_date=DAILY_DATE)
                daily_again = cluster.trigger("happyhorse_daily_content", logical_date=DAILY_AGAIN)
                batch_days = [cluster.trigger("happyhorse_batch_backfill", logical_date=day) for day in BATCH_DAYS]
                over_budget = cluster.trigger("happyhorse_batch_backfill", conf={"max_run_credits": 100})
                cluster.trigger("happyhorse_image_to_video")
                cluster.trigger("happyhorse_multi_shot_story")
                # The scheduler also starts the scheduled DAGs' own latest runs: every run counts.
                for dag_id in VIDEO_TASKS:
                    for run_id in run_ids(cluster, dag_id):
                        cluster.wait_for_run(dag_id, run_id, timeout=400)
                wait_for_publish(cluster, output)
            states = {key: recorder.states(key) for key in recorder.history}
            yield Finished(cluster, emulator, output, daily_run, daily_again, batch_days, over_budget, states)


def test_every_video_task_succeeded_after_sitting_in_deferred(finished: Finished) -> None:
    keys = finished.video_tasks()
    assert len(keys) >= 1 + 12 + 1 + 1  # one daily run, two batch days of 6, image-to-video, multi-shot
    for key in keys:
        states = finished.states.get(key, [])
        assert "deferred" in states, (key, states)
        assert states[-1] == "success", (key, states)


def test_one_paid_submission_per_rendered_video(finished: Finished) -> None:
    videos = len(finished.video_tasks())
    stats = finished.emulator.stats()
    assert stats["submissions"]["accepted"] == videos
    assert stats["duplicate_submissions"] == 0
    assert stats["jobs"]["by_state"]["SUCCESS"] == videos


def test_a_second_daily_run_on_the_same_day_pays_nothing_and_keeps_the_clip(finished: Finished) -> None:
    first = finished.cluster.xcom("happyhorse_daily_content", finished.daily_run, "daily_clip")
    again = finished.cluster.task_instances("happyhorse_daily_content", finished.daily_again)
    assert {ti.task_id: ti.state for ti in again} == {"daily_clip": "success"}
    # The clip's record: the same request, so nothing was submitted and the recorded result came back.
    assert finished.cluster.xcom("happyhorse_daily_content", finished.daily_again, "daily_clip") == first
    clip = Path(first["stored_path"].removeprefix("file://"))
    assert clip == finished.output / "daily" / "2026-11-01.mp4"
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == first["stored_sha256"]  # not overwritten


def test_batch_days_pay_for_new_clips_only(finished: Finished) -> None:
    batch = results(finished.cluster, finished.video_tasks(), "happyhorse_batch_backfill")
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
    tis = finished.cluster.task_instances("happyhorse_batch_backfill", finished.over_budget)
    states = {ti.task_id: (ti.state, ti.try_number) for ti in tis}
    assert states["plan_renders"] == ("failed", 1)  # refused without retries
    assert states.get("render", (None, 0))[0] in (None, "upstream_failed")
    logs = "\n".join(
        path.read_text() for path in finished.cluster.task_log_files("happyhorse_batch_backfill", finished.over_budget)
    )
    assert (
        "max_run_credits: the run's 6 renders are estimated at 2080 credits, above the limit of 100 credits. "
        "Nothing was submitted." in logs
    )


def test_every_stored_clip_is_published_exactly_once(finished: Finished) -> None:
    keys = finished.video_tasks()
    stored = [result["stored_path"] for dag_id in VIDEO_TASKS for result in results(finished.cluster, keys, dag_id)]
    assert len(stored) >= 1 + 12 + 2
    assert sorted(published(finished.cluster)) == sorted(stored)

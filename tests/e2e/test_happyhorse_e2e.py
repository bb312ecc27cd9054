"""
The product on real Airflow processes (scheduler with LocalExecutor, triggerer, dag-processor,
api-server) against the emulator in its own process: the daily example DAG (clip stored, asset event,
publishing DAG) and a 20-item mapped batch. The other examples run in ``test_examples_e2e.py``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import av
import pytest
from e2e.runs import run_ids, video_keys, wait_for_publish

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster, TaskKey

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "dags" / "examples"
E2E_DAGS = Path(__file__).parent / "happyhorse_dags"
DAILY_DATE = datetime(2026, 11, 1, tzinfo=UTC)
VIDEO_TASKS = {"happyhorse_e2e_batch": "render", "happyhorse_daily_content": "daily_clip"}


@dataclass(frozen=True)
class Finished:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    output: Path
    daily_run: str
    batch_run: str
    states: dict[TaskKey, list[str]]

    def video_tasks(self) -> list[TaskKey]:
        return video_keys(self.cluster, VIDEO_TASKS)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    dags = tmp_path_factory.mktemp("dags")
    for name in ("happyhorse_daily_content.py", "happyhorse_publish.py", "happyhorse_example_settings.py"):
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
                daily_run = cluster.trigger("happyhorse_daily_content", logical_date=DAILY_DATE)
                batch_run = cluster.trigger("happyhorse_e2e_batch")
                # The scheduler may also have started the daily DAG's own latest run: every run counts.
                for dag_id in VIDEO_TASKS:
                    for run_id in run_ids(cluster, dag_id):
                        cluster.wait_for_run(dag_id, run_id, timeout=300)
                wait_for_publish(cluster, output)
            states = {key: recorder.states(key) for key in recorder.history}
            yield Finished(cluster, emulator, output, daily_run, batch_run, states)


def test_every_video_task_succeeded_after_sitting_in_deferred(finished: Finished) -> None:
    keys = finished.video_tasks()
    assert len(keys) >= 20 + 1
    for key in keys:
        states = finished.states.get(key, [])
        assert "deferred" in states, (key, states)
        assert states[-1] == "success", (key, states)


def test_one_paid_submission_per_video(finished: Finished) -> None:
    videos = len(finished.video_tasks())
    stats = finished.emulator.stats()
    assert stats["submissions"]["accepted"] == videos
    assert stats["duplicate_submissions"] == 0
    assert stats["jobs"]["by_state"]["SUCCESS"] == videos


def test_worker_starts_one_per_video_unless_a_clip_is_stored(finished: Finished) -> None:
    starts = finished.cluster.worker_starts()
    for key in finished.video_tasks():
        expected = 2 if key.dag_id == "happyhorse_daily_content" else 1  # the download resumes on a worker
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
    # Ended on a worker: the link was made from the result XCom there. The clip is stored, so the link is its
    # page in the HappyHorse view (which never expires), not the temporary URL.
    link = finished.cluster.xcom(
        "happyhorse_daily_content", finished.daily_run, "daily_clip", "_link_HappyHorseVideoLink"
    )
    query = urlencode(
        {"dag_id": "happyhorse_daily_content", "run_id": finished.daily_run, "task_id": "daily_clip", "map_index": -1}
    )
    assert link == f"/happyhorse/clip?{query}"
    assert manifest["job_id"] == result["job_id"]
    assert not [p.name for p in clip.parent.iterdir() if p.name.endswith(".partial")]


def test_batch_results_and_links_come_from_the_triggerer(finished: Finished) -> None:
    for key in finished.video_tasks():
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
    assert loop_blocks(finished.cluster.component_log("triggerer").read_text()) == []


def loop_blocks(log: str) -> list[str]:
    """
    Airflow's "async thread was blocked" warnings, except those inside a stall of the whole process: when
    this loaded 2-core machine stops the triggerer for seconds, its heartbeat thread stops too and Airflow
    then logs "Heartbeat recovered after N seconds" (N >= 5) within 15 s. Those stalls are the machine's,
    not a trigger's.
    """
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                events.append((datetime.fromisoformat(record["timestamp"]), str(record.get("event", ""))))
    stalls = [
        when
        for when, event in events
        if (match := re.match(r"Heartbeat recovered after ([\d.]+) seconds", event)) and float(match[1]) >= 5
    ]
    return [
        event
        for when, event in events
        if "async thread was blocked" in event
        and not any(timedelta(0) <= stall - when <= timedelta(seconds=15) for stall in stalls)
    ]


def test_the_api_key_is_nowhere(finished: Finished) -> None:
    assert finished.cluster.find_secret(finished.emulator.api_key) == []


def test_happyhorse_jobs_shows_and_forgets_through_the_real_api(finished: Finished) -> None:
    # Last in this module: it forgets one task instance's job.
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

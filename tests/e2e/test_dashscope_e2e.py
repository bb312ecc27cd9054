"""
The DashScope examples on real Airflow processes (issue 23, item 8) against the emulator speaking Alibaba Cloud
Model Studio's dialect: three 720P drafts with their seeds and the chosen one again at 1080P
(``happyhorse_drafts_then_final``, pick 1), the edit of that final that its asset event schedules
(``happyhorse_edit_clip``), and reference-to-video from a character sheet (``happyhorse_reference_to_video``).
Every render is paid once, each stored clip has the frame its resolution promises, and the key is in no log.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import pytest
from e2e.runs import run_ids

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

EXAMPLES = Path(__file__).parents[2] / "dags" / "examples"
COPIED = (
    "happyhorse_drafts_then_final.py",
    "happyhorse_edit_clip.py",
    "happyhorse_reference_to_video.py",
    "happyhorse_example_settings.py",
)
DAY = datetime(2026, 11, 2, tzinfo=UTC)
PICK = 1
SEEDS = [11, 42, 2026]  # happyhorse_drafts_then_final.SEEDS


@dataclass(frozen=True)
class Finished:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    output: Path
    drafts_run: str
    reference_run: str
    edit_run: str

    def result(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.xcom(dag_id, run_id, task_id, map_index=map_index)
        return result


def wait_for_edit_run(cluster: AirflowCluster) -> str:
    """The edit DAG's run that the final's asset event started, once it has finished."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = run_ids(cluster, "happyhorse_edit_clip")
        if runs:
            cluster.wait_for_run("happyhorse_edit_clip", runs[0], timeout=240)
            return runs[0]
        time.sleep(1)
    raise AssertionError("the final's asset event started no happyhorse_edit_clip run")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    dags = tmp_path_factory.mktemp("dags")
    for name in COPIED:
        shutil.copy(EXAMPLES / name, dags / name)
    output = tmp_path_factory.mktemp("clips")
    config = EmulatorConfig(dialect="dashscope", speed=0.05, max_concurrent_per_key=None, seed=23)
    with EmulatorProcess(config) as emulator:
        # A loopback host implies happyhorse.app's dialect: the extra says DashScope.
        connection = {
            "conn_type": "happyhorse",
            "host": emulator.base_url,
            "password": emulator.api_key,
            "extra": {"dialect": "dashscope"},
        }
        env = {
            "AIRFLOW_CONN_HAPPYHORSE_DASHSCOPE": json.dumps(connection),
            "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
            "HAPPYHORSE_FIRST_POLL_AFTER": "1.5",
            "HAPPYHORSE_POLL_INTERVAL": "0.5",
            "HAPPYHORSE_IMAGE_BASE_URL": f"{emulator.base_url}/_emulator/images",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        with AirflowCluster(tmp_path_factory.mktemp("airflow-home"), dags, env, parallelism=4) as cluster:
            drafts_run = cluster.trigger("happyhorse_drafts_then_final", conf={"pick": PICK}, logical_date=DAY)
            reference_run = cluster.trigger("happyhorse_reference_to_video")
            cluster.wait_for_run("happyhorse_drafts_then_final", drafts_run, timeout=400)
            cluster.wait_for_run("happyhorse_reference_to_video", reference_run, timeout=400)
            edit_run = wait_for_edit_run(cluster)
            yield Finished(cluster, emulator, output, drafts_run, reference_run, edit_run)


def frame(clip: Path) -> tuple[int, int, float]:
    with av.open(str(clip)) as container:
        video = container.streams.video[0].codec_context
        return video.width, video.height, float(container.duration or 0) / av.time_base


def stored(result: dict[str, Any]) -> Path:
    return Path(result["stored_path"].removeprefix("file://"))


def test_every_run_succeeded(finished: Finished) -> None:
    for dag_id, run_id in (
        ("happyhorse_drafts_then_final", finished.drafts_run),
        ("happyhorse_reference_to_video", finished.reference_run),
        ("happyhorse_edit_clip", finished.edit_run),
    ):
        states = {(ti.task_id, ti.map_index): ti.state for ti in finished.cluster.task_instances(dag_id, run_id)}
        assert set(states.values()) == {"success"}, (dag_id, states)


def test_each_render_is_paid_once(finished: Finished) -> None:
    stats = finished.emulator.stats()
    renders = 3 + 1 + 1 + 1  # three drafts, the final, its edit, the reference clip
    assert stats["submissions"]["accepted"] == renders
    assert stats["duplicate_submissions"] == 0
    jobs = finished.emulator.jobs()
    assert len(jobs) == renders
    assert all(job["final_phase"] == "SUCCESS" for job in jobs.values()), jobs


def test_drafts_are_720p_and_the_final_is_the_chosen_seed_at_1080p(finished: Finished) -> None:
    drafts = [
        finished.result("happyhorse_drafts_then_final", finished.drafts_run, "draft", map_index=index)
        for index in range(len(SEEDS))
    ]
    assert [draft["request"]["seed"] for draft in drafts] == SEEDS
    for index, draft in enumerate(drafts):
        assert draft["request"]["resolution"] == "720P"
        assert stored(draft) == finished.output / "drafts" / "2026-11-02" / f"seed-{index}.mp4"
        width, height, duration = frame(stored(draft))
        assert (width, height) == (1280, 720)
        assert abs(duration - 5) < 0.15
    final = finished.result("happyhorse_drafts_then_final", finished.drafts_run, "final")
    assert final["request"]["seed"] == SEEDS[PICK]
    assert final["request"]["resolution"] == "1080P"
    assert final["request"]["prompt"] == drafts[PICK]["request"]["prompt"]
    width, height, _ = frame(stored(final))
    assert (width, height) == (1920, 1080)


def test_the_edit_takes_the_finals_clip_from_its_asset_event(finished: Finished) -> None:
    final = finished.result("happyhorse_drafts_then_final", finished.drafts_run, "final")
    edit = finished.result("happyhorse_edit_clip", finished.edit_run, "edit")
    assert edit["request"]["source_video"] == final["video_url"]
    assert edit["request"]["task"] == "edit"
    width, height, duration = frame(stored(edit))
    assert (width, height) == (1920, 1080)  # 1080P (the default) at the source's 16:9
    assert abs(duration - 5) < 0.15  # as long as its source


def test_the_reference_clip_is_720p_9_16(finished: Finished) -> None:
    result = finished.result("happyhorse_reference_to_video", finished.reference_run, "character_sheet")
    assert result["request"]["task"] == "reference"
    assert len(result["request"]["image_urls"]) == 2
    width, height, _ = frame(stored(result))
    assert (width, height) == (720, 1280)


def test_the_api_key_is_nowhere(finished: Finished) -> None:
    assert finished.cluster.find_secret(finished.emulator.api_key) == []

"""
The review example (happyhorse_review) on real Airflow processes against the emulator, answered through
Airflow's REST API as the UI answers: a run whose spend is rejected submits nothing; in a run whose spend
is approved, one clip approved, one regenerated with an edited prompt (paid once) and the new clip
rejected, only the approved clip is published as an asset event, and the view shows each clip's outcome.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e.hitl import answer, wait_for_question

from airflow_provider_happyhorse.ui.plugin import view_available
from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not view_available(), reason="the HITL operators need Airflow 3.1+"),
]

EXAMPLES = Path(__file__).parents[2] / "dags" / "examples"
DAG_ID = "happyhorse_review"
NEW_PROMPT = "A paper boat drifting down a rainy street at night, neon reflections."
ALIAS = "happyhorse_reviewed_clips"


def start_review_cluster(tmp: pytest.TempPathFactory, emulator: EmulatorProcess, output: Path) -> AirflowCluster:
    """A cluster (scheduler, triggerer, api-server, DAG processor) with the review example and its settings."""
    dags = tmp.mktemp("dags")
    for name in ("happyhorse_review.py", "happyhorse_example_settings.py"):
        shutil.copy(EXAMPLES / name, dags / name)
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    env = {
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
        "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
        "HAPPYHORSE_FIRST_POLL_AFTER": "1.5",
        "HAPPYHORSE_POLL_INTERVAL": "0.5",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    }
    return AirflowCluster(tmp.mktemp("airflow-home"), dags, env, parallelism=4)


def asset_events(cluster: AirflowCluster) -> list[dict[str, Any]]:
    """Every asset event whose source is the review DAG (what downstream DAGs scheduled on the alias see)."""
    events = cluster.api("GET", "/assets/events", params={"source_dag_id": DAG_ID, "limit": 100})["asset_events"]
    return list(events)


def finish(cluster: AirflowCluster, run_id: str, timeout: float) -> None:
    """Wait for the run; if it failed, say which tasks did and show their logs."""
    if cluster.wait_for_run(DAG_ID, run_id, timeout=timeout) == "success":
        return
    states = {(ti.task_id, ti.map_index): ti.state for ti in cluster.task_instances(DAG_ID, run_id)}
    logs = "\n".join(path.read_text()[-3000:] for path in cluster.task_log_files(DAG_ID, run_id))
    raise AssertionError(f"{run_id} failed: {states}\n{logs}")


@dataclass(frozen=True)
class Reviewed:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    rejected_run: str
    run: str
    questions: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reviewed]:
    output = tmp_path_factory.mktemp("clips")
    config = EmulatorConfig(speed=0.05, max_concurrent_per_key=None, seed=11)
    with EmulatorProcess(config) as emulator, start_review_cluster(tmp_path_factory, emulator, output) as cluster:
        rejected_run = cluster.trigger(DAG_ID, run_id="spend_rejected")
        answer(cluster, DAG_ID, rejected_run, "approve_spend", "Reject")
        finish(cluster, rejected_run, timeout=120)

        run = cluster.trigger(DAG_ID, run_id="reviewed")
        questions = {"approve_spend": wait_for_question(cluster, DAG_ID, run, "approve_spend")}
        answer(cluster, DAG_ID, run, "approve_spend", "Approve")
        questions["review_clip"] = wait_for_question(cluster, DAG_ID, run, "review_clip", 0)
        answer(cluster, DAG_ID, run, "review_clip", "approve", 0)
        answer(cluster, DAG_ID, run, "review_clip", "regenerate", 1, {"prompt": NEW_PROMPT})
        answer(cluster, DAG_ID, run, "review_again", "reject", 0)
        finish(cluster, run, timeout=240)
        yield Reviewed(cluster, emulator, rejected_run, run, questions)


def test_a_rejected_spend_submits_nothing_and_skips_every_render(reviewed: Reviewed) -> None:
    states = {ti.task_id: ti.state for ti in reviewed.cluster.task_instances(DAG_ID, reviewed.rejected_run)}
    assert states["approve_spend"] == "success"
    for task_id in ("render", "review_clip", "decide", "regenerate", "review_again", "publish"):
        assert states[task_id] == "skipped", (task_id, states)


def test_the_approval_shows_the_renders_and_their_estimated_credits(reviewed: Reviewed) -> None:
    question = reviewed.questions["approve_spend"]
    assert question["subject"] == "Pay for 2 HappyHorse renders?"
    assert question["options"] == ["Approve", "Reject"]
    # Two std 5 s clips with sound, 60 credits a second (the price list): 300 each.
    assert "| 0 | A lighthouse at dusk, waves below, slow aerial orbit. | std | 5 s | yes | 300 |" in question["body"]
    assert "| | **total: 2 renders** | | | | **600** |" in question["body"]


def test_each_clip_is_asked_about_with_its_poster_and_its_page_in_the_view(reviewed: Reviewed) -> None:
    question = reviewed.questions["review_clip"]
    key = f"dag_id={DAG_ID}&run_id={reviewed.run}&task_id=render&map_index=0"
    page = f"{reviewed.cluster.rest.base_url}/happyhorse/clip?{key}"
    assert question["options"] == ["approve", "regenerate", "reject"]
    assert f"[Watch the clip in the HappyHorse view]({page})" in question["body"]
    poster = page.replace("/clip?", "/files/poster?")
    assert f"]({poster})]({page})" in question["body"]
    # The link and the poster both answer (the poster is a JPEG the provider stored).
    client = reviewed.cluster.client
    assert client.get(page).status_code == 200
    response = client.get(poster)
    assert response.status_code == 200, response.text
    assert response.content[:3] == b"\xff\xd8\xff"


def test_three_renders_were_paid_once_each(reviewed: Reviewed) -> None:
    stats = reviewed.emulator.stats()
    # Two renders, one regeneration with the edited prompt; the rejected run submitted nothing.
    assert stats["submissions"]["accepted"] == 3
    assert stats["duplicate_submissions"] == 0
    new = reviewed.cluster.xcom(DAG_ID, reviewed.run, "regenerate", map_index=0)
    assert new["request"]["prompt"] == NEW_PROMPT


def test_only_the_approved_clip_is_published_as_an_asset_event(reviewed: Reviewed) -> None:
    approved = reviewed.cluster.xcom(DAG_ID, reviewed.run, "render", map_index=0)
    events = [event for event in asset_events(reviewed.cluster) if event["source_run_id"] == reviewed.run]
    assert [event["uri"] for event in events] == [approved["stored_path"]]
    extra = events[0]["extra"]
    assert (extra["job_id"], extra["stored_sha256"], extra["map_index"]) == (
        approved["job_id"],
        approved["stored_sha256"],
        0,
    )
    assert reviewed.cluster.xcom(DAG_ID, reviewed.run, "publish") == [approved["stored_path"]]
    assert not [event for event in asset_events(reviewed.cluster) if event["source_run_id"] == reviewed.rejected_run]


def test_the_view_shows_each_clips_review_outcome(reviewed: Reviewed) -> None:
    url = f"{reviewed.cluster.rest.base_url}/happyhorse/api/clips"
    rows = reviewed.cluster.client.get(url, params={"dag_id": DAG_ID}).json()["clips"]
    outcomes = {(row["task_id"], row["map_index"]): (row["review"] or {}).get("outcome") for row in rows}
    assert outcomes == {("render", 0): "approved", ("render", 1): "regenerated", ("regenerate", 0): "rejected"}

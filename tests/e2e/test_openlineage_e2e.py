"""
OpenLineage on a running deployment (scheduler, triggerer, dag-processor, api-server) with the OpenLineage
provider's file transport: what arrives for a video the triggerer ends and for a clip a worker stores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_happyhorse.lineage import FACET_SCHEMA_URL
from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAGS = Path(__file__).parent / "lineage_dags"
DAG_ID = "happyhorse_e2e_lineage"


@dataclass(frozen=True)
class Lineage:
    events: list[dict[str, Any]]
    output: Path
    xcoms: dict[str, dict[str, Any]]

    def of_task(self, task_id: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["job"]["name"] == f"{DAG_ID}.{task_id}"]


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lineage]:
    output = tmp_path_factory.mktemp("clips")
    events_file = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    config = EmulatorConfig(speed=0.05, max_concurrent_per_key=None, seed=5)
    with EmulatorProcess(config) as emulator:
        connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
        env = {
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
            "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__OPENLINEAGE__DISABLED": "False",  # the harness turns it off for every other test
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "happyhorse-e2e",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(events_file), "append": True}
            ),
        }
        home = tmp_path_factory.mktemp("airflow-home")
        with AirflowCluster(home, DAGS, env, parallelism=4) as cluster:
            run_id = cluster.trigger(DAG_ID)
            assert cluster.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
            xcoms = {task: cluster.xcom(DAG_ID, run_id, task) for task in ("ended_in_triggerer", "stored")}
            # The DAG run's own COMPLETE is the last event Airflow sends (from the scheduler, after the tasks').
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                events = read_events(events_file)
                if any(e["job"]["name"] == DAG_ID and e["eventType"] == "COMPLETE" for e in events):
                    break
                time.sleep(0.5)
            # Kept for whoever reads a failure: every event, as the file transport wrote it.
            (tmp_path_factory.getbasetemp() / "openlineage-events.json").write_text(json.dumps(events, indent=1))
            yield Lineage(events, output, xcoms)


def test_the_stored_clip_is_the_output_and_the_job_a_run_facet(lineage: Lineage) -> None:
    events = lineage.of_task("stored")
    # A START when it began, another when a worker resumed it after the triggerer, then its COMPLETE.
    assert [event["eventType"] for event in events] == ["START", "START", "COMPLETE"]
    complete = [event for event in events if event["eventType"] == "COMPLETE"]
    [event] = complete
    assert [(output["namespace"], output["name"]) for output in event["outputs"]] == [
        ("file", str(lineage.output / "lineage.mp4"))
    ]
    result = lineage.xcoms["stored"]
    facet = event["run"]["facets"]["happyhorse"]
    assert facet["_schemaURL"] == FACET_SCHEMA_URL
    assert {key: facet[key] for key in ("job_id", "model", "mode", "duration", "credits_estimate")} == {
        "job_id": result["job_id"],
        "model": "happyhorse-1.0/video",
        "mode": "pro",
        "duration": 4,
        "credits_estimate": 80 * 4,
    }
    assert event["run"]["facets"]["externalQuery"]["externalQueryId"] == result["job_id"]


def test_a_task_the_triggerer_ends_gets_only_its_start(lineage: Lineage) -> None:
    # Airflow 3.3.2 marks it successful in airflow/models/trigger.py (handle_event_submit for a
    # BaseTaskEndEvent) without calling any listener: the OpenLineage provider never hears of its end.
    events = lineage.of_task("ended_in_triggerer")
    assert lineage.xcoms["ended_in_triggerer"]["status"] == "SUCCESS"
    assert [event["eventType"] for event in events] == ["START"]
    assert "happyhorse" not in events[0]["run"]["facets"]

"""
The distributed deployment end to end: PostgreSQL and Redis (private instances), CeleryExecutor with two workers,
two triggerers, a scheduler, a dag-processor and two api-servers, each process a host of its own
(``harness/distributed.py``), running the reliability suite's mapped batch (``rel_dist_batch``: 30 videos and a
downstream task that receives every result) against the emulator in its own process.

Needs ``.venv-distributed`` (``requirements/distributed.txt``) and Debian's ``postgresql`` and ``redis-server``:
``make e2e-distributed`` installs both. Skipped where the distributed extras are not installed (``make test``).
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

pytest.importorskip("airflow.providers.celery", reason="needs the distributed extras: make e2e-distributed")
pytest.importorskip("psycopg2", reason="needs the distributed extras: make e2e-distributed")

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import TaskKey
from harness.distributed import DistributedCluster
from harness.processes import processes_in
from reliability.lab import CLUSTER_SETTINGS, DISTRIBUTED_DAGS_FOLDER
from reliability.plan import RENDER_SECONDS_AT_SPEED_1

pytestmark = [pytest.mark.e2e, pytest.mark.distributed, pytest.mark.timeout(900)]

DAG_ID = "rel_dist_batch"
VIDEOS = 30
RENDER_SECONDS = 10.0


@dataclass(frozen=True)
class Finished:
    cluster: DistributedCluster
    emulator: EmulatorProcess
    api_key: str
    batch: str
    run_id: str
    state: str
    states: dict[TaskKey, list[str]]

    def renders(self) -> list[Any]:
        return sorted(
            (ti for ti in self.cluster.task_instances(DAG_ID, self.run_id) if ti.task_id == "render"),
            key=lambda ti: ti.map_index,
        )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(DISTRIBUTED_DAGS_FOLDER / f"{DAG_ID}.py", dags)
    clips = tmp_path_factory.mktemp("clips")
    api_key = f"hh-distributed-{secrets.token_hex(16)}"
    config = EmulatorConfig(
        speed=RENDER_SECONDS / RENDER_SECONDS_AT_SPEED_1, max_concurrent_per_key=None, api_keys=[api_key]
    )
    batch = secrets.token_hex(4)
    with EmulatorProcess(config) as emulator:
        connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": api_key}
        env = {**CLUSTER_SETTINGS, f"AIRFLOW_CONN_{DAG_ID.upper()}": json.dumps(connection)}
        home = tmp_path_factory.mktemp("airflow-home").resolve()
        with DistributedCluster(home, dags, env) as cluster:
            print(f"distributed cluster healthy after {cluster.startup_seconds:.0f} s")
            cluster.wait_for_dag(DAG_ID)
            with cluster.record_states(dag_id=DAG_ID) as recorder:
                conf = {"count": VIDEOS, "batch": batch, "clips_dir": str(clips)}
                run_id = cluster.trigger(DAG_ID, conf=conf)
                state = cluster.wait_for_run(DAG_ID, run_id, timeout=600)
            states = {key: recorder.states(key) for key in recorder.history}
            yield Finished(cluster, emulator, api_key, batch, run_id, state, states)
        assert processes_in(home) == []
        assert not cluster.postgres.running
        assert not cluster.redis.running


def test_every_component_runs_on_a_host_of_its_own(finished: Finished) -> None:
    cluster = finished.cluster
    assert cluster.triggerers == ["triggerer-1", "triggerer-2"]
    assert cluster.workers == ["worker-1", "worker-2"]
    assert all(cluster.is_running(name) for name in cluster.components), cluster.components
    assert len(set(cluster.hostnames.values())) == len(cluster.hostnames)
    jobs = cluster.db.query("SELECT job_type, hostname FROM job WHERE state = 'running'")
    by_type: dict[str, set[str]] = {}
    for job in jobs:
        by_type.setdefault(job["job_type"], set()).add(job["hostname"])
    assert by_type["TriggererJob"] == {cluster.hostnames["triggerer-1"], cluster.hostnames["triggerer-2"]}
    assert by_type["SchedulerJob"] == {cluster.hostnames["scheduler"]}
    assert by_type["DagProcessorJob"] == {cluster.hostnames["dag-processor"]}
    for name in ("api-server", "execution-api"):
        spec = cluster.processes.specs[name]
        assert spec.health_url is not None
        assert spec.hostname == cluster.hostnames[name]
        assert httpx.get(spec.health_url, timeout=5).status_code == 200
    # Each serving component on a log-server port of its own, answering there.
    ports = [cluster.processes.specs[name].log_server_port for name in cluster.triggerers + cluster.workers]
    assert len(set(ports)) == len(ports)
    assert None not in ports
    for port in ports:
        assert httpx.get(f"http://127.0.0.1:{port}/log/nothing", timeout=5).status_code in (403, 404)


def test_the_batch_ran_on_both_workers_and_every_task_succeeded_once(finished: Finished) -> None:
    assert finished.state == "success"
    renders = finished.renders()
    assert [ti.map_index for ti in renders] == list(range(VIDEOS))
    assert {(ti.state, ti.try_number) for ti in renders} == {("success", 1)}
    for ti in renders:
        assert "deferred" in finished.states[ti.key], (ti.key, finished.states[ti.key])
    # The triggers store the results: no worker starts again after a render.
    starts = finished.cluster.worker_starts(DAG_ID, finished.run_id)
    assert {starts[ti.key] for ti in renders} == {1}
    hosts = {
        row["hostname"]
        for row in finished.cluster.db.query(
            "SELECT hostname FROM task_instance WHERE dag_id = ? AND task_id = 'render'", (DAG_ID,)
        )
    }
    assert hosts == {finished.cluster.hostnames["worker-1"], finished.cluster.hostnames["worker-2"]}


def test_each_video_was_paid_for_once(finished: Finished) -> None:
    stats = finished.emulator.stats()
    assert stats["submissions"]["total"] == VIDEOS
    assert stats["submissions"]["accepted"] == VIDEOS
    assert stats["jobs"]["total"] == VIDEOS
    assert stats["duplicate_submissions"] == 0
    job_ids = [
        finished.cluster.xcom(DAG_ID, finished.run_id, "render", "job_id", ti.map_index) for ti in finished.renders()
    ]
    assert sorted(job_ids) == sorted(finished.emulator.jobs())


def test_the_downstream_task_got_a_dict_per_video(finished: Finished) -> None:
    results = [
        finished.cluster.xcom(DAG_ID, finished.run_id, "render", map_index=ti.map_index) for ti in finished.renders()
    ]
    assert all(isinstance(result, dict) for result in results)
    collected = finished.cluster.xcom(DAG_ID, finished.run_id, "collect")
    assert collected == {"videos": VIDEOS, "types": ["dict"], "job_ids": sorted(finished.emulator.jobs())}


def test_the_api_key_is_in_no_log_or_table(finished: Finished) -> None:
    assert finished.cluster.find_secret(finished.api_key) == []
    # The search reaches PostgreSQL's tables and the logs: the batch token is in the run's conf, the XComs
    # and the task logs.
    places = finished.cluster.find_secret(finished.batch)
    kinds = {place.split("[", 1)[0] if place.startswith("db:") else "file" for place in places}
    assert {"file", "db:dag_run.conf", "db:xcom.value", "db:rendered_task_instance_fields.rendered_fields"} <= kinds

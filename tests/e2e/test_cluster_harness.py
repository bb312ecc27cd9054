"""The harness against a real scheduler, triggerer, dag-processor and api-server: only what the provider's e2e
tests and reliability trials rely on to fail, each test naming the provider check it guards.

One cluster is shared by the module; its fixture stops it and checks nothing is left behind.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.airflow_cluster import AirflowCluster, TaskKey
from harness.processes import processes_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAGS = Path(__file__).parent / "harness_dags"
SMOKE = "harness_smoke"


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    home = tmp_path_factory.mktemp("airflow-home")
    # A copy: nothing the cluster writes lands in the repository.
    dags = shutil.copytree(DAGS, tmp_path_factory.mktemp("dags") / "dags")
    with AirflowCluster(home, dags, parallelism=4) as running:
        print(f"cluster healthy after {running.startup_seconds:.1f}s (db migrate {running.migrate_seconds:.1f}s)")
        yield running
    assert processes_in(home.resolve()) == []


@dataclass(frozen=True)
class FirstRun:
    run_id: str
    state: str
    marker: str


@pytest.fixture(scope="module")
def first_run(cluster: AirflowCluster) -> FirstRun:
    cluster.wait_for_dag(SMOKE)
    marker = f"harness-marker-{secrets.token_hex(8)}"
    run_id = cluster.trigger(SMOKE, conf={"marker": marker})
    state = cluster.wait_for_run(SMOKE, run_id, timeout=180)
    assert state == "success"
    return FirstRun(run_id, state, marker)


def test_task_instances_and_xcom(cluster: AirflowCluster, first_run: FirstRun) -> None:
    """Guards the provider tests: if task instances or XComs were read for the wrong map index, the e2e checks of
    each video of a mapped batch would pass one video's result in place of another's."""
    tis = cluster.task_instances(SMOKE, first_run.run_id)

    assert [(ti.task_id, ti.map_index, ti.state, ti.try_number) for ti in tis] == [
        ("answer", -1, "success", 1),
        ("double", 0, "success", 1),
        ("double", 1, "success", 1),
        ("double", 2, "success", 1),
        ("wait", -1, "success", 1),
        ("wait_and_resume", -1, "success", 1),
    ]
    assert all(ti.start_date and ti.end_date and ti.start_date <= ti.end_date for ti in tis)
    assert cluster.xcom(SMOKE, first_run.run_id, "answer") == {"answer": 42}
    # A `dict` return annotation turns on multiple_outputs: each key is an XCom of its own.
    assert cluster.xcoms(SMOKE, first_run.run_id, "answer") == {"return_value": {"answer": 42}, "answer": 42}
    assert [cluster.xcom(SMOKE, first_run.run_id, "double", map_index=i) for i in range(3)] == [2, 4, 6]


def test_worker_starts_count_resumes(cluster: AirflowCluster, first_run: FirstRun) -> None:
    """Guards the provider tests: if worker starts were undercounted, the e2e 'one worker start per video' check and
    the trials' start counts would pass a task that ran twice."""
    starts = cluster.worker_starts(dag_id=SMOKE, run_id=first_run.run_id)

    assert starts == {
        TaskKey(SMOKE, first_run.run_id, "wait"): 1,  # finished inside the triggerer
        TaskKey(SMOKE, first_run.run_id, "wait_and_resume"): 2,  # started, then resumed
        TaskKey(SMOKE, first_run.run_id, "answer"): 1,
        **{TaskKey(SMOKE, first_run.run_id, "double", i): 1 for i in range(3)},
    }
    # A supervisor can log its end a few seconds after the task instance is final.
    wait_until(
        lambda: len([r for r in cluster.worker_runs() if r.key and r.key.run_id == first_run.run_id]) == 7,
        timeout=30,
        what="seven finished worker runs in the scheduler log",
    )
    runs = [r for r in cluster.worker_runs() if r.key and r.key.run_id == first_run.run_id]
    assert sorted((r.key.task_id, r.key.map_index, r.final_state) for r in runs if r.key) == [
        ("answer", -1, "success"),
        ("double", 0, "success"),
        ("double", 1, "success"),
        ("double", 2, "success"),
        ("wait", -1, "deferred"),
        ("wait_and_resume", -1, "deferred"),
        ("wait_and_resume", -1, "success"),
    ]
    assert all(r.duration > 0 and r.exit_code == 0 for r in runs)


def test_find_secret(cluster: AirflowCluster, first_run: FirstRun) -> None:
    """Guards the provider tests: if find_secret found nothing, every 'the API key is nowhere' check in e2e and the
    trials would pass a leaked key."""
    places = cluster.find_secret(first_run.marker)

    assert any(place.startswith("db:dag_run.conf[") for place in places), places
    assert cluster.find_secret(f"never-used-{secrets.token_hex(16)}") == []
    # And in the files under the home, where task and component logs are.
    planted = cluster.home / "logs" / "planted" / "attempt=1.log"
    planted.parent.mkdir(parents=True)
    secret = f"planted-{secrets.token_hex(8)}"
    planted.write_text(f"a first line\nthe key {secret} in a log line\n")
    assert [place for place in cluster.find_secret(secret) if place.endswith("planted/attempt=1.log:2")], secret


def test_kill_and_restart_triggerer(cluster: AirflowCluster) -> None:
    """Guards the provider tests: if kill() left the triggerer running, or find_secret could not read the encrypted
    trigger kwargs, the triggerer-kill trial would pass without a kill or with the key in a trigger row."""
    old_pids = cluster.pids("triggerer")
    assert old_pids
    run_id = cluster.trigger(SMOKE)
    wait = TaskKey(SMOKE, run_id, "wait")
    wait_until(
        lambda: any(ti.key == wait and ti.state == "deferred" for ti in cluster.task_instances(SMOKE, run_id)),
        timeout=60,
        what="the wait task to defer",
    )
    # Trigger kwargs are Fernet-encrypted in the DB; find_secret decrypts them.
    assert any(place.startswith("db:trigger.kwargs[") for place in cluster.find_secret("end_from_trigger"))

    killed = cluster.kill("triggerer")
    assert set(killed) == set(old_pids)
    assert not cluster.is_running("triggerer")
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in old_pids)
    seconds = cluster.restart("triggerer")
    print(f"triggerer back after {seconds:.1f}s")

    assert cluster.is_running("triggerer")
    assert set(cluster.pids("triggerer")).isdisjoint(old_pids)
    assert cluster.wait_for_run(SMOKE, run_id, timeout=180) == "success"

"""The harness's own end-to-end test: a real scheduler, triggerer, dag-processor and api-server.

One cluster is shared by the module; the last test stops it and checks nothing is left behind.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from harness.airflow_cluster import AirflowCluster, StateRecorder, TaskKey
from harness.processes import processes_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAGS = Path(__file__).parent / "harness_dags"
SMOKE = "harness_smoke"
SLEEPY = "harness_sleepy"


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    home = tmp_path_factory.mktemp("airflow-home")
    # A copy, so a test can add DAG files without touching the repository.
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
    recorder: StateRecorder


@pytest.fixture(scope="module")
def first_run(cluster: AirflowCluster) -> FirstRun:
    cluster.wait_for_dag(SMOKE)
    marker = f"harness-marker-{secrets.token_hex(8)}"
    with cluster.record_states(dag_id=SMOKE) as recorder:
        run_id = cluster.trigger(SMOKE, conf={"marker": marker})
        state = cluster.wait_for_run(SMOKE, run_id, timeout=180)
    return FirstRun(run_id, state, marker, recorder)


def test_dag_is_parsed_without_import_errors(cluster: AirflowCluster) -> None:
    dag = cluster.wait_for_dag(SMOKE)

    assert dag["is_paused"] is False
    assert [e for e in cluster.import_errors() if "harness_smoke" in e.filename] == []
    assert cluster.unparsed_files() == []


def test_new_and_broken_dag_files_are_picked_up(cluster: AirflowCluster) -> None:
    late = (DAGS / "harness_sleepy.py").read_text().replace('"harness_sleepy"', '"harness_late"')
    (cluster.dags_folder / "harness_late.py").write_text(late)
    (cluster.dags_folder / "harness_broken.py").write_text(
        "from airflow.sdk import DAG\n\nraise RuntimeError('broken on purpose')\n"
    )
    began = time.monotonic()

    cluster.wait_for_dag("harness_late", timeout=60)
    wait_until(
        lambda: any(e.filename == "harness_broken.py" for e in cluster.import_errors()),
        timeout=60,
        what="the import error of harness_broken.py",
    )

    print(f"new DAG files parsed after {time.monotonic() - began:.1f}s")
    (error,) = [e for e in cluster.import_errors() if e.filename == "harness_broken.py"]
    assert "broken on purpose" in error.stack_trace
    assert cluster.unparsed_files() == []


def test_deferrable_run_succeeds_and_is_observed(cluster: AirflowCluster, first_run: FirstRun) -> None:
    assert first_run.state == "success"
    recorder = first_run.recorder
    wait = TaskKey(SMOKE, first_run.run_id, "wait")
    resume = TaskKey(SMOKE, first_run.run_id, "wait_and_resume")

    assert "deferred" in recorder.states(wait)
    assert recorder.states(wait)[-1] == "success"
    resume_states = recorder.states(resume)
    # A step shorter than one sampling interval can be missed (the task defers milliseconds after
    # it starts running), so only the order is checked here. The exact number of worker starts is
    # checked by test_worker_starts_count_resumes.
    deferred_at = resume_states.index("deferred")
    assert set(resume_states[:deferred_at]) <= {"none", "scheduled", "queued", "running"}
    # After the trigger fires the task is scheduled, queued and run again.
    after_deferral = resume_states[deferred_at + 1 :]
    assert after_deferral[-1] == "success"
    assert set(after_deferral[:-1]) <= {"scheduled", "queued", "running"}
    assert recorder.samples > 10
    assert recorder.find(SMOKE, "answer") == {
        TaskKey(SMOKE, first_run.run_id, "answer"): recorder.states(TaskKey(SMOKE, first_run.run_id, "answer"))
    }


def test_task_instances_and_xcom(cluster: AirflowCluster, first_run: FirstRun) -> None:
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


def test_logs_and_db_rows(cluster: AirflowCluster, first_run: FirstRun) -> None:
    files = cluster.log_files()

    for component in ("scheduler", "triggerer", "dag-processor", "api-server", "execution-api"):
        assert cluster.component_log(component) in files  # type: ignore[arg-type]
        assert cluster.component_log(component).stat().st_size > 0  # type: ignore[arg-type]
    task_logs = cluster.task_log_files(SMOKE, first_run.run_id)
    assert any(path.name == "attempt=1.log" and path.parent.name == "task_id=answer" for path in task_logs)
    assert any(".trigger." in path.name for path in task_logs)  # the triggerer's log of the wait
    runs = [row for row in cluster.db_rows("dag_run") if row["run_id"] == first_run.run_id]
    assert len(runs) == 1
    assert runs[0]["state"] == "success"
    with pytest.raises(ValueError, match="no table"):
        cluster.db_rows("no_such_table; DROP TABLE dag")


def test_rest_and_execution_apis_are_separate_processes(cluster: AirflowCluster) -> None:
    """Task runners never call the process that serves REST writes (the deadlock in harness.processes)."""
    rest, execution = f"http://127.0.0.1:{cluster.port}", f"http://127.0.0.1:{cluster.execution_port}"

    assert cluster.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{execution}/execution/"
    assert httpx.get(f"{execution}/execution/health").json() == {"status": "healthy"}
    # The REST process has no execution API: its UI's catch-all route answers with a page.
    assert httpx.get(f"{rest}/execution/health").headers["content-type"].startswith("text/html")
    assert httpx.get(f"{execution}/api/v2/monitor/health").status_code == 404
    assert set(cluster.pids("api-server")).isdisjoint(cluster.pids("execution-api"))


def test_find_secret(cluster: AirflowCluster, first_run: FirstRun) -> None:
    places = cluster.find_secret(first_run.marker)

    assert any(place.startswith("db:dag_run.conf[") for place in places), places
    assert cluster.find_secret(f"never-used-{secrets.token_hex(16)}") == []


def test_kill_and_restart_triggerer(cluster: AirflowCluster) -> None:
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


def test_kill_task_processes(cluster: AirflowCluster) -> None:
    cluster.wait_for_dag(SLEEPY)
    run_id = cluster.trigger(SLEEPY)
    wait_until(
        lambda: {p.role for p in cluster.task_processes(SLEEPY, "sleep_long")} == {"supervisor", "task-runner"},
        timeout=60,
        what="the supervisor and the task runner of sleep_long",
    )
    assert cluster.task_processes(SLEEPY, "no_such_task") == []
    assert len({p.ti_id for p in cluster.task_processes(SLEEPY)}) == 1

    killed = cluster.kill_task_processes(SLEEPY, "sleep_long", signal.SIGKILL)

    assert sorted(p.role for p in killed) == ["supervisor", "task-runner"]
    wait_until(lambda: cluster.task_processes(SLEEPY) == [], timeout=10, what="the task processes to die")
    # Nobody reports the task's end: the scheduler fails it after the heartbeat timeout.
    assert cluster.wait_for_run(SLEEPY, run_id, timeout=120) == "failed"
    assert cluster.worker_starts(SLEEPY, run_id) == {TaskKey(SLEEPY, run_id, "sleep_long"): 1}


def test_stop_leaves_no_process(cluster: AirflowCluster) -> None:
    assert processes_in(cluster.home)
    began = time.monotonic()

    cluster.stop()

    print(f"stopped in {time.monotonic() - began:.1f}s")
    assert processes_in(cluster.home) == []
    assert not any(cluster.is_running(name) for name in cluster.components)


def test_dags_test_cli(tmp_path: Path) -> None:
    # `dags test` writes a real DAG run into the metadata DB, which a running scheduler and
    # triggerer would also pick up, so it runs against a home with no components.
    with AirflowCluster(tmp_path / "home", DAGS, components=(), wait_for_parse=False) as cli_only:
        result = cli_only.run_cli("dags", "test", SMOKE, timeout=240)

        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs = cli_only.db_rows("dag_run")
        assert [(run["dag_id"], run["state"], run["triggered_by"]) for run in runs] == [(SMOKE, "success", "TEST")]
    assert processes_in(cli_only.home) == []

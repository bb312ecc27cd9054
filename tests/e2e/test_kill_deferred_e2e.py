"""
A deferred task killed by a user on real Airflow processes (issue 23, item 4), against the emulator speaking
Alibaba Cloud Model Studio's dialect: the task's job is held queued (PENDING) behind a long render of the same key
(one render slot per key), the task is marked failed through Airflow's REST API, and the triggerer's ``on_kill``
cancels the job (nothing billed) without submitting another; a clear then submits anew, saying it is paid once.

The other reason Airflow 3.3.2 calls ``on_kill``: a move of the trigger to another triggerer. The cluster has one
triggerer, so the test moves the trigger the way ``Trigger.assign_unassigned`` does, in the metadata DB: to a
second triggerer job that is alive (a fresh heartbeat) but runs nothing. The real triggerer then drops the trigger
through ``update_triggers`` and calls its ``on_kill``, which must cancel nothing; once that job's heartbeat is
older than ``[triggerer] triggerer_health_check_threshold`` the real triggerer takes the trigger back and polls on.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAGS = Path(__file__).parent / "kill_dags"
DAG_ID = "happyhorse_e2e_kill"
TASK_ID = "render"
CREATE = "/api/v1/services/aigc/video-generation/video-synthesis"


@dataclass(frozen=True)
class Lab:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    service: httpx.Client  # the emulator's DashScope API, with the key

    def task_status(self, task_id: str) -> str:
        response = self.service.get(f"/api/v1/tasks/{task_id}")
        response.raise_for_status()
        status: str = response.json()["output"]["task_status"]
        return status

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.cluster.log_files() if path.is_file())


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # One render slot per key and renders of about an hour: every job after the first stays PENDING.
    config = EmulatorConfig(dialect="dashscope", max_concurrent_per_key=1, base_seconds=3600.0, seed=23)
    with EmulatorProcess(config) as emulator:
        connection = {
            "conn_type": "happyhorse",
            "host": emulator.base_url,
            "password": emulator.api_key,
            "extra": {"dialect": "dashscope"},
        }
        env = {
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        with (
            httpx.Client(base_url=emulator.base_url, headers=headers, timeout=10.0, trust_env=False) as service,
            AirflowCluster(tmp_path_factory.mktemp("airflow-home"), DAGS, env, parallelism=2) as cluster,
        ):
            # The render that holds the key's one slot.
            blocker = service.post(
                CREATE,
                json={"model": "happyhorse-1.0-t2v", "input": {"prompt": "the long render"}, "parameters": {}},
                headers={"X-DashScope-Async": "enable"},
            )
            blocker.raise_for_status()
            cluster.wait_for_dag(DAG_ID)
            yield Lab(cluster, emulator, service)


def deferred_job(lab: Lab, run_id: str) -> str:
    """The run's task once deferred: the id of the job its trigger polls."""

    def state() -> str | None:
        [ti] = lab.cluster.task_instances(DAG_ID, run_id)
        return ti.state

    wait_until("the task to defer", lambda: state() == "deferred")
    job_id: str = lab.cluster.xcom(DAG_ID, run_id, TASK_ID, key="job_id")
    return job_id


def polling(whose: str, lab: Lab, calls: int, timeout: float = 60.0) -> None:
    """Until the emulator has answered ``calls`` status queries: a trigger runs in the triggerer (a task killed
    before its trigger started has nothing to stop there)."""
    wait_until(f"{whose} to poll", lambda: lab.emulator.stats()["status_calls"]["total"] >= calls, timeout=timeout)


def ti_path(run_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{TASK_ID}"


def test_marking_a_deferred_task_failed_cancels_its_queued_job_and_a_clear_submits_anew(lab: Lab) -> None:
    run_id = lab.cluster.trigger(DAG_ID)
    job_id = deferred_job(lab, run_id)
    polling("the trigger", lab, 1)
    assert lab.task_status(job_id) == "PENDING"
    accepted = lab.emulator.stats()["submissions"]["accepted"]
    assert accepted == 2  # the blocker and this task's job

    lab.cluster.api("PATCH", ti_path(run_id), json={"new_state": "failed"})
    wait_until(f"job {job_id} to be cancelled", lambda: lab.task_status(job_id) == "CANCELED")
    said = f"Cancelled job {job_id} on Alibaba Cloud Model Studio (DashScope) while it was still queued (PENDING)"
    wait_until("the triggerer to say it cancelled the job", lambda: said in lab.logs(), timeout=30)
    logs = lab.logs()
    assert "nothing was billed" in logs
    assert "The task was stopped by a user (task instance happyhorse_e2e_kill.render" in logs
    assert "moved this trigger" not in logs
    assert lab.emulator.stats()["submissions"]["accepted"] == accepted  # nothing submitted again
    assert lab.cluster.find_secret(lab.emulator.api_key) == []

    # A clear: the new try reads the kept job id, finds it CANCELED (never billed) and submits the request again.
    lab.cluster.api(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        json={"dry_run": False, "task_ids": [TASK_ID], "dag_run_id": run_id, "only_failed": False},
    )
    second = wait_until(
        "the new try to submit again",
        lambda: (jobs := set(lab.emulator.jobs()) - {job_id}) and len(jobs) == 2 and jobs,
    )
    assert lab.emulator.stats()["submissions"]["accepted"] == accepted + 1
    resubmitted = f"Job {job_id} from an earlier try was cancelled (CANCELED) while it was queued, so it was not billed"
    wait_until("the new try to say why it submitted again", lambda: resubmitted in lab.logs(), timeout=60)
    assert len(second) == 2  # the blocker and the new try's job

    # Mark the new try failed too, so the cluster stops with nothing waiting.
    new_job = deferred_job(lab, run_id)
    assert new_job != job_id
    polling("the new try's trigger", lab, lab.emulator.stats()["status_calls"]["total"] + 1)
    lab.cluster.api("PATCH", ti_path(run_id), json={"new_state": "failed"})
    wait_until(f"job {new_job} to be cancelled", lambda: lab.task_status(new_job) == "CANCELED")


def move_trigger_away(lab: Lab, run_id: str) -> int:
    """
    Hand the run's trigger to a triggerer job that heartbeats once, now, and never runs anything (what
    ``Trigger.assign_unassigned`` does when another triggerer takes a trigger); returns that job's id.
    """
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy keeps a time in SQLite
    with sqlite3.connect(lab.cluster.db_path, timeout=30) as db:
        [(trigger_id,)] = db.execute(
            "SELECT trigger_id FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            (DAG_ID, run_id, TASK_ID),
        ).fetchall()
        assert trigger_id is not None
        other = db.execute(
            "INSERT INTO job (job_type, state, start_date, latest_heartbeat, hostname, unixname, executor_class) "
            "VALUES ('TriggererJob', 'running', ?, ?, 'elsewhere', 'test', 'none')",
            (now, now),
        ).lastrowid
        assert other is not None
        db.execute("UPDATE trigger SET triggerer_id = ? WHERE id = ?", (other, trigger_id))
    return other


def test_a_trigger_moved_to_another_triggerer_cancels_nothing(lab: Lab) -> None:
    run_id = lab.cluster.trigger(DAG_ID)
    job_id = deferred_job(lab, run_id)
    polling("the trigger", lab, lab.emulator.stats()["status_calls"]["total"] + 1)
    accepted = lab.emulator.stats()["submissions"]["accepted"]

    move_trigger_away(lab, run_id)
    said = "so Airflow moved this trigger to another triggerer, which goes on polling it. Nothing was cancelled."
    wait_until("the triggerer to say the trigger moved", lambda: f"job {job_id} here: task instance" in lab.logs())
    logs = lab.logs()
    assert said in logs
    assert f"Cancelled job {job_id}" not in logs
    assert lab.task_status(job_id) == "PENDING"
    [ti] = lab.cluster.task_instances(DAG_ID, run_id)
    assert ti.state == "deferred"

    # The other triggerer's one heartbeat grows old: the real one takes the trigger back and polls on.
    calls = lab.emulator.stats()["status_calls"]["total"]
    polling("the trigger, taken back", lab, calls + 1, timeout=120.0)
    assert lab.task_status(job_id) == "PENDING"
    assert lab.emulator.stats()["submissions"]["accepted"] == accepted

    # A user's kill then still cancels it.
    lab.cluster.api("PATCH", ti_path(run_id), json={"new_state": "failed"})
    wait_until(f"job {job_id} to be cancelled", lambda: lab.task_status(job_id) == "CANCELED")
    assert lab.cluster.find_secret(lab.emulator.api_key) == []

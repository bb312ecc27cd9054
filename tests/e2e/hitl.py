"""Human-in-the-loop reviews through Airflow's REST API: wait until a task asks, then answer it."""

from __future__ import annotations

import time
from typing import Any

from harness.airflow_cluster import AirflowCluster
from harness.rest import ApiError


def hitl_path(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"


def wait_for_question(
    cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str, map_index: int = -1, timeout: float = 240
) -> dict[str, Any]:
    """The task instance's open question (subject, body, options, params), once it has asked it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            detail: dict[str, Any] = cluster.api("GET", hitl_path(dag_id, run_id, task_id, map_index))
        except ApiError as error:
            if error.status_code != 404:
                raise
        else:
            if not detail.get("response_received"):
                return detail
        state = cluster.dag_run(dag_id, run_id)["state"]
        if state in ("success", "failed"):
            states = {(ti.task_id, ti.map_index): ti.state for ti in cluster.task_instances(dag_id, run_id)}
            logs = "\n".join(path.read_text()[-3000:] for path in cluster.task_log_files(dag_id, run_id))
            raise AssertionError(f"{dag_id} {run_id} ended ({state}) before {task_id} asked: {states}\n{logs}")
        time.sleep(1)
    raise AssertionError(f"{dag_id} {run_id} {task_id}[{map_index}] asked nothing in {timeout} s")


# Airflow 3.3 race: an answer that lands before the scheduler has handled the executor's "finished" event of
# the process that parked the task re-queues it first, then that stale event fails it ("finished with state
# success, but the task instance's state attribute is queued"). A person takes longer than a scheduler loop.
HUMAN_LATENCY = 3.0


def wait_until_parked(
    cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str, map_index: int, timeout: float = 60
) -> None:
    """Until the task waits for its answer (awaiting_input on 3.3+, deferred before), and a person's moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {(ti.task_id, ti.map_index): ti.state for ti in cluster.task_instances(dag_id, run_id)}
        if states.get((task_id, map_index)) in ("awaiting_input", "deferred"):
            time.sleep(HUMAN_LATENCY)
            return
        time.sleep(0.5)
    raise AssertionError(f"{dag_id} {run_id} {task_id}[{map_index}] never waited for its answer")


def answer(
    cluster: AirflowCluster,
    dag_id: str,
    run_id: str,
    task_id: str,
    option: str,
    map_index: int = -1,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    wait_for_question(cluster, dag_id, run_id, task_id, map_index)
    wait_until_parked(cluster, dag_id, run_id, task_id, map_index)
    payload = {"chosen_options": [option], "params_input": params or {}}
    response: dict[str, Any] = cluster.api("PATCH", hitl_path(dag_id, run_id, task_id, map_index), json=payload)
    return response

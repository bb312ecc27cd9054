"""What the end-to-end modules ask a finished cluster: runs, video task instances, results, published clips."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.airflow_cluster import AirflowCluster, TaskKey


def run_ids(cluster: AirflowCluster, dag_id: str) -> list[str]:
    return [run["dag_run_id"] for run in cluster.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]]


def published(cluster: AirflowCluster) -> list[str]:
    """Every clip the publishing DAG's runs say they published (their return values), in order."""
    clips: list[str] = []
    for run_id in run_ids(cluster, "happyhorse_publish"):
        clips += cluster.xcom("happyhorse_publish", run_id, "publish") or []
    return clips


def wait_for_publish(cluster: AirflowCluster, output: Path) -> None:
    """Until every stored clip has its manifest and every publishing run has finished."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = cluster.api("GET", "/dags/happyhorse_publish/dagRuns")["dag_runs"]
        clips = list(output.glob("**/*.mp4"))
        manifests = [clip for clip in clips if clip.with_name(clip.name + ".manifest.json").exists()]
        if runs and len(manifests) == len(clips) and all(run["state"] in ("success", "failed") for run in runs):
            logs = "\n".join(path.read_text()[-3000:] for path in cluster.task_log_files("happyhorse_publish"))
            assert [run["state"] for run in runs] == ["success"] * len(runs), logs
            return
        time.sleep(1)
    raise AssertionError("the publishing DAG did not publish every stored clip")


def video_keys(cluster: AirflowCluster, video_tasks: dict[str, str], skip_runs: tuple[str, ...] = ()) -> list[TaskKey]:
    """Every video task instance (``video_tasks``: DAG id -> task id) of every run but ``skip_runs``."""
    keys = []
    for dag_id, task_id in video_tasks.items():
        for run_id in run_ids(cluster, dag_id):
            if run_id in skip_runs:
                continue
            for ti in cluster.task_instances(dag_id, run_id):
                if ti.task_id == task_id:
                    keys.append(TaskKey(dag_id, run_id, task_id, ti.map_index))
    return keys


def results(cluster: AirflowCluster, keys: list[TaskKey], dag_id: str) -> list[dict[str, Any]]:
    return [
        cluster.xcom(key.dag_id, key.run_id, key.task_id, map_index=key.map_index)
        for key in keys
        if key.dag_id == dag_id
    ]

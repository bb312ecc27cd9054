"""Worker-cost floor: a bare ``@task`` that returns at once, one DAG per "video" (nothing is rendered)."""

from __future__ import annotations

from _worker_cost_settings import DAG_ARGS, VIDEOS, dag_id
from airflow.sdk import DAG, task

VARIANT = "bare_task"


@task(task_id="render")
def render() -> None:
    return None


for index in range(VIDEOS):
    with DAG(dag_id=dag_id(VARIANT, index), **DAG_ARGS):
        render()

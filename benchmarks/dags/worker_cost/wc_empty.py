"""Worker-cost floor: ``EmptyOperator`` as users write it, one DAG per "video" (nothing is rendered).

An ``EmptyOperator`` without callbacks, inlets or outlets never reaches a worker: the scheduler marks it
successful itself (``DagRun.schedule_tis`` in Airflow 3.3), so it costs no worker slot and no worker start.
"""

from __future__ import annotations

from _worker_cost_settings import DAG_ARGS, VIDEOS, dag_id
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

VARIANT = "empty"

for index in range(VIDEOS):
    with DAG(dag_id=dag_id(VARIANT, index), **DAG_ARGS):
        EmptyOperator(task_id="render")

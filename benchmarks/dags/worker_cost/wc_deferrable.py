"""Worker-cost variant 1: ``GenerateVideoOperator`` as shipped (deferrable, no clip stored), one DAG per video."""

from __future__ import annotations

from _worker_cost_settings import DAG_ARGS, VIDEOS, dag_id, operator_kwargs
from airflow.sdk import DAG

from airflow_provider_happyhorse import GenerateVideoOperator

for index in range(VIDEOS):
    with DAG(dag_id=dag_id("deferrable", index), **DAG_ARGS):
        GenerateVideoOperator(task_id="render", happyhorse_conn_id="happyhorse_default", **operator_kwargs(index))

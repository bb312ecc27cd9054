"""Worker-cost floor: ``EmptyOperator`` made to run on a worker, one DAG per "video" (nothing is rendered).

A no-op ``on_execute_callback`` is enough for the scheduler to send it to a worker instead of marking it
successful itself: the cheapest run of a classic operator a worker slot can hold.
"""

from __future__ import annotations

from typing import Any

from _worker_cost_settings import DAG_ARGS, VIDEOS, dag_id
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

VARIANT = "empty_worker"


def _nothing(context: Any) -> None:
    return None


for index in range(VIDEOS):
    with DAG(dag_id=dag_id(VARIANT, index), **DAG_ARGS):
        EmptyOperator(task_id="render", on_execute_callback=_nothing)

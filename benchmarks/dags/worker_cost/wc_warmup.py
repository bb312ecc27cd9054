"""One trivial task, run before the measured DAG runs so that no variant pays the cluster's first-use costs.

(The first execution-API call a fresh api-server serves takes seconds: its routes and the serialized DAG
are loaded on first use.)
"""

from __future__ import annotations

from airflow.sdk import DAG, task

with DAG(dag_id="wc_warmup", schedule=None, catchup=False, tags=["benchmark", "worker_cost"]):

    @task
    def warm_up() -> None:
        return None

    warm_up()

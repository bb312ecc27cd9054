"""Worker-cost variant: ``GenerateVideoOperator`` with ``output_path``, one DAG per video.

The clip is stored on a worker (download, probe, poster frame), so the task comes back from the triggerer
to a worker once the render is done: two worker starts per video.
"""

from __future__ import annotations

from _worker_cost_settings import DAG_ARGS, VIDEOS, clip_path, dag_id, operator_kwargs
from airflow.sdk import DAG

from airflow_provider_happyhorse import GenerateVideoOperator

VARIANT = "stored"

for index in range(VIDEOS):
    with DAG(dag_id=dag_id(VARIANT, index), **DAG_ARGS):
        GenerateVideoOperator(
            task_id="render",
            happyhorse_conn_id="happyhorse_stored",
            output_path=clip_path(VARIANT, index),
            **operator_kwargs(index, VARIANT),
        )

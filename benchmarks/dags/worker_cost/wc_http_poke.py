"""Worker-cost variant 2: the HTTP provider, ``HttpOperator`` submits, ``HttpSensor`` polls in poke mode.

``HttpSensor`` cannot defer when it has a ``response_check`` (``execute`` falls back to
``BaseSensorOperator.execute``), so in poke mode it holds its worker slot for the whole render.
"""

from __future__ import annotations

import json

from _worker_cost_settings import DAG_ARGS, POLL_SECONDS, VIDEOS, dag_id, job_finished, job_id_of, request_body
from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG

VARIANT = "poke"
CONN_ID = "happyhorse_http_poke"

for index in range(VIDEOS):
    with DAG(dag_id=dag_id(VARIANT, index), **DAG_ARGS):
        submit = HttpOperator(
            task_id="submit",
            http_conn_id=CONN_ID,
            endpoint="api/generate",
            method="POST",
            data=json.dumps(request_body(VARIANT, index)),
            headers={"Content-Type": "application/json"},
            response_filter=job_id_of,
        )
        wait = HttpSensor(
            task_id="wait",
            http_conn_id=CONN_ID,
            endpoint="api/status",
            method="GET",
            request_params={"task_id": "{{ ti.xcom_pull(task_ids='submit') }}"},
            response_check=job_finished,
            mode="poke",
            poke_interval=POLL_SECONDS,
            timeout=3600,
        )
        submit >> wait

"""One deferred DashScope render for the kill test (tests/e2e/test_kill_deferred_e2e.py): its job waits queued."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(dag_id="happyhorse_e2e_kill", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    GenerateVideoOperator(
        task_id="render",
        prompt="a horse waits in the queue",
        duration=3,
        resolution="720P",
        deferrable=True,
        first_poll_after=0.5,
        poll_interval=0.5,
        max_poll_interval=1.0,
        retries=0,
    )

"""Integration-test DAG whose clip only some users may see (the HappyHorse view's per-DAG access tests)."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(dag_id="happyhorse_it_private", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    GenerateVideoOperator(
        task_id="private_clip",
        prompt="a private horse, {{ ds }}",
        duration=3,
        sound=False,
        output_path=os.environ.get("HAPPYHORSE_IT_OUTPUT", "file:///tmp/happyhorse-it") + "/private-{{ ds }}.mp4",
        first_poll_after=0.5,
        poll_interval=0.3,
        max_poll_interval=1.0,
    )

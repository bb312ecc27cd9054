"""Integration-test DAG: three mapped videos (ended by the triggerer) and one stored clip (ended on a worker)."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

POLLING = {"first_poll_after": 0.5, "poll_interval": 0.3, "max_poll_interval": 1.0}

with DAG(dag_id="happyhorse_it_videos", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    GenerateVideoOperator.partial(task_id="mapped", sound=False, **POLLING).expand_kwargs(
        [
            {"prompt": "a horse at dawn", "duration": 3},
            {"prompt": "a horse at noon", "duration": 4, "aspect_ratio": "1:1"},
            {"prompt": "a horse at dusk", "duration": 5, "aspect_ratio": "9:16"},
        ]
    )
    GenerateVideoOperator(
        task_id="stored",
        prompt="a horse at night, {{ ds }}",
        duration=3,
        output_path=os.environ.get("HAPPYHORSE_IT_OUTPUT", "file:///tmp/happyhorse-it") + "/{{ ds }}.mp4",
        **POLLING,
    )

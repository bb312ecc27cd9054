"""End-to-end DAG: a 20-item mapped batch, ended by the triggerer (no clip stored: one worker start each)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

ITEMS = [
    {
        "prompt": f"shot {index}: a horse crossing a river, take {index}",
        "duration": 3 + index % 4,
        "sound": index % 2 == 0,
    }
    for index in range(20)
]

with DAG(dag_id="happyhorse_e2e_batch", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    GenerateVideoOperator.partial(
        task_id="render",
        first_poll_after=1.0,
        poll_interval=0.5,
        max_poll_interval=2.0,
        retries=2,
        retry_delay=timedelta(seconds=5),
    ).expand_kwargs(ITEMS)

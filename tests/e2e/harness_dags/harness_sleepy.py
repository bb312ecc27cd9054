"""One long Python task, for killing its worker processes from a test."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import DAG, task

with DAG(
    dag_id="harness_sleepy",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["harness"],
):

    @task(retries=0)
    def sleep_long() -> None:
        time.sleep(300)

    sleep_long()

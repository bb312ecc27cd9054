"""
DAG A of the FAB access test (tests/distributed/test_ui_fab.py): one stored clip and its poster, which only the
role its access_control names may read. FAB syncs that into the DAG's permissions when the DAG is written to the
metadata DB (the role must exist by then).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_fab_private",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    access_control={"happyhorse_private_readers": {"DAGs": {"can_read"}}},
):
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

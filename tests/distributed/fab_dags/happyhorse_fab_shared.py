"""
DAG B of the FAB access test (tests/distributed/test_ui_fab.py): one clip (not stored) that both test roles may
read, so the user who may not read DAG A still has a gallery, and the test can tell "filtered" from "empty".
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_fab_shared",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    access_control={
        "happyhorse_private_readers": {"DAGs": {"can_read"}},
        "happyhorse_shared_readers": {"DAGs": {"can_read"}},
    },
):
    GenerateVideoOperator(
        task_id="shared_clip",
        prompt="a shared horse, {{ ds }}",
        duration=3,
        sound=False,
        first_poll_after=0.5,
        poll_interval=0.3,
        max_poll_interval=1.0,
    )

"""End-to-end DAG for OpenLineage: one video the triggerer ends, one clip a worker stores."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

POLLING = {"first_poll_after": 1.0, "poll_interval": 0.5, "max_poll_interval": 2.0}

with DAG(dag_id="happyhorse_e2e_lineage", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    GenerateVideoOperator(task_id="ended_in_triggerer", prompt="a horse at dawn", duration=3, sound=False, **POLLING)
    GenerateVideoOperator(
        task_id="stored",
        prompt="a horse at dusk",
        mode="pro",
        duration=4,
        output_path=os.environ.get("HAPPYHORSE_OUTPUT_ROOT", "file:///tmp/happyhorse-e2e") + "/lineage.mp4",
        **POLLING,
    )

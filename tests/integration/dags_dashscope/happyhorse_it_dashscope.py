"""Integration-test DAG in the DashScope dialect: a 720P draft stored and verified, then an edit of its clip."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

POLLING = {"first_poll_after": 0.5, "poll_interval": 0.3, "max_poll_interval": 1.0}

with DAG(dag_id="happyhorse_it_dashscope", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    draft = GenerateVideoOperator(
        task_id="draft",
        prompt="a horse at dawn, {{ ds }}",
        duration=3,
        resolution="720P",
        seed=7,
        output_path=os.environ.get("HAPPYHORSE_IT_OUTPUT", "file:///tmp/happyhorse-it") + "/{{ ds }}.mp4",
        **POLLING,
    )
    edit = GenerateVideoOperator(
        task_id="edit",
        prompt="make it night",
        task="edit",
        source_video="{{ ti.xcom_pull(task_ids='draft')['video_url'] }}",
        audio_setting="origin",
        **POLLING,
    )
    draft >> edit

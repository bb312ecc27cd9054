"""
The one DAG shape most trials use, built by the files in ``reliability/dags/``.

``video_batch`` is a mapped ``GenerateVideoOperator`` over ``count`` requests made at run time from the run's
conf, each with a prompt unique to the batch, so the emulator's per-request fingerprints tell a second paid
job for the same task apart from the other tasks' jobs. Every trial has its own connection (``conn_id`` ==
``dag_id``) pointing at its own emulator, so trials that run side by side keep separate counts and faults.

This module lives outside the DAG folder on purpose: the DAG processor only parses the files that build DAGs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

START_DATE = datetime(2026, 1, 1)
VIDEO_SECONDS = 3
# Seconds; the emulator renders in seconds too (its `speed` knob sets how many).
FAST_POLLING: dict[str, float] = {"first_poll_after": 4.0, "poll_interval": 1.0, "max_poll_interval": 2.0}
EAGER_POLLING: dict[str, float] = {"first_poll_after": 2.0, "poll_interval": 1.0, "max_poll_interval": 2.0}


def batch_prompt(dag_id: str, batch: str, index: int) -> str:
    return f"reliability trial {dag_id}, batch {batch}, video {index}: a horse crossing a river at dawn"


def clip_path(clips_dir: str, dag_id: str, batch: str, index: int) -> str:
    return f"file://{clips_dir}/{dag_id}/{batch}/video-{index}.mp4"


def video_batch(
    dag_id: str,
    *,
    polling: dict[str, float],
    retries: int,
    retry_delay_seconds: float,
    store_clips: bool = False,
    operator: type[GenerateVideoOperator] = GenerateVideoOperator,
    doc_md: str | None = None,
) -> DAG:
    """A DAG of ``params.count`` mapped videos (``render``), stored under ``params.clips_dir`` if asked."""
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        params={"count": 1, "batch": "b", "clips_dir": ""},
        tags=["reliability"],
        doc_md=doc_md,
    ) as dag:

        @task
        def video_requests(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
            settings = params or {}
            batch = str(settings["batch"])
            requests = []
            for index in range(int(settings["count"])):
                request: dict[str, Any] = {"prompt": batch_prompt(dag_id, batch, index)}
                if store_clips:
                    request["output_path"] = clip_path(str(settings["clips_dir"]), dag_id, batch, index)
                requests.append(request)
            return requests

        operator.partial(
            task_id="render",
            happyhorse_conn_id=dag_id,
            duration=VIDEO_SECONDS,
            sound=False,
            retries=retries,
            retry_delay=timedelta(seconds=retry_delay_seconds),
            **polling,
        ).expand_kwargs(video_requests())
    return dag

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
    collect: bool = False,
    request_fields: dict[str, Any] | None = None,
) -> DAG:
    """A DAG of ``params.count`` mapped videos (``render``), stored under ``params.clips_dir`` if asked.

    ``request_fields`` override the request's other fields (default: no sound, the operator's defaults).
    With ``collect``, a downstream task (``collect``) receives every video's result as a downstream task of a
    user's would, fails unless each one is a dict with a job id, and returns how many it got.
    """
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

        videos = operator.partial(
            task_id="render",
            happyhorse_conn_id=dag_id,
            **{"duration": VIDEO_SECONDS, "sound": False, **(request_fields or {})},
            retries=retries,
            retry_delay=timedelta(seconds=retry_delay_seconds),
            **polling,
        ).expand_kwargs(video_requests())
        if collect:
            collect_results(videos.output)
    return dag


@task(task_id="collect", retries=0)
def collect_results(results: Any) -> dict[str, Any]:
    """What a downstream task gets from the mapped videos: one dict per video, each with its job id."""
    received = list(results)
    kinds = sorted({type(result).__name__ for result in received})
    not_dicts = [index for index, result in enumerate(received) if not isinstance(result, dict)]
    if not_dicts:
        raise TypeError(f"results {not_dicts} are not dicts (types seen: {kinds})")
    missing = [index for index, result in enumerate(received) if not result.get("job_id")]
    if missing:
        raise ValueError(f"results {missing} have no job_id")
    return {"videos": len(received), "types": kinds, "job_ids": sorted(str(result["job_id"]) for result in received)}

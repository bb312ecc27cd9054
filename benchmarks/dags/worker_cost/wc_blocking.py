"""Worker-cost variant 4: a plain ``@task`` that submits with httpx and polls every 15 s until the job is final."""

from __future__ import annotations

import time
from typing import Any

from _worker_cost_settings import (
    DAG_ARGS,
    FAILED_STATUSES,
    POLL_SECONDS,
    SUCCESS_STATUSES,
    VIDEOS,
    dag_id,
    request_body,
)
from airflow.sdk import DAG, task

VARIANT = "blocking"
CONN_ID = "happyhorse_http_blocking"


@task(task_id="render")
def render(body: dict[str, Any]) -> str:
    import httpx
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(CONN_ID)
    with httpx.Client(base_url=str(connection.host), headers=connection.extra_dejson, timeout=30) as client:
        submitted = client.post("/api/generate", json=body)
        submitted.raise_for_status()
        job_id = str(submitted.json()["data"]["task_id"])
        while True:
            time.sleep(POLL_SECONDS)
            polled = client.get("/api/status", params={"task_id": job_id})
            polled.raise_for_status()
            data = polled.json()["data"]
            if data["status"] in SUCCESS_STATUSES:
                return job_id
            if data["status"] in FAILED_STATUSES:
                raise RuntimeError(f"HappyHorse job {job_id} ended {data['status']}: {data.get('error_message')}")


for index in range(VIDEOS):
    with DAG(dag_id=dag_id(VARIANT, index), **DAG_ARGS):
        render(request_body(VARIANT, index))

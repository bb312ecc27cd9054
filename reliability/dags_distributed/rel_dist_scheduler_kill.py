"""Airflow DAG of distributed trial D6: the scheduler is SIGKILLed while tasks are queued and running on the
Celery workers, then restarted."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch(
    "rel_dist_scheduler_kill", polling=EAGER_POLLING, retries=2, retry_delay_seconds=3, collect=True, doc_md=__doc__
)

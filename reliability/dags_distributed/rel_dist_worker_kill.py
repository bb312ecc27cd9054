"""Airflow DAG of distributed trial D4: a Celery worker is SIGKILLed right after its tasks submitted (before they
defer). Every task is a ``reliability.killers.HeldAfterSubmit``: its first try waits there for the trial. The
retries must re-attach to the jobs from the other worker."""

from __future__ import annotations

from reliability.dagkit import FAST_POLLING, video_batch
from reliability.killers import HeldAfterSubmit

video_batch(
    "rel_dist_worker_kill",
    polling=FAST_POLLING,
    retries=2,
    retry_delay_seconds=3,
    operator=HeldAfterSubmit,
    collect=True,
    doc_md=__doc__,
)

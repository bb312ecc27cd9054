"""Airflow DAG of distributed trial D5: a Celery worker is SIGKILLed while its tasks store their clips. Every task
is a ``reliability.killers.HeldDuringDownload``: after the render, the first try's worker waits for the trial
after the first chunk. The retries, on the other worker, must store every clip whole."""

from __future__ import annotations

from reliability.dagkit import FAST_POLLING, video_batch
from reliability.killers import HeldDuringDownload

video_batch(
    "rel_dist_download_kill",
    polling=FAST_POLLING,
    retries=2,
    retry_delay_seconds=8,
    store_clips=True,
    operator=HeldDuringDownload,
    collect=True,
    doc_md=__doc__,
)

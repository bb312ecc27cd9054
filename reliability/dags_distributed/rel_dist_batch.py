"""Airflow DAG of distributed trial D1: a mapped batch of videos on CeleryExecutor (two workers, two triggerers),
with a downstream task that gets every result."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch("rel_dist_batch", polling=EAGER_POLLING, retries=0, retry_delay_seconds=1, collect=True, doc_md=__doc__)

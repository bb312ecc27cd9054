"""Airflow DAG of distributed trial D2: one of two triggerers is SIGKILLed mid-render; the other takes its
triggers. No task retries allowed."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch(
    "rel_dist_triggerer_kill", polling=EAGER_POLLING, retries=0, retry_delay_seconds=1, collect=True, doc_md=__doc__
)

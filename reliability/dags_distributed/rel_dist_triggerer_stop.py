"""Airflow DAG of distributed trial D3: one of two triggerers is SIGSTOPped past the health-check threshold (its
triggers move to the other), then SIGCONTed: for a while both run the same triggers. No task retries allowed."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch(
    "rel_dist_triggerer_stop", polling=EAGER_POLLING, retries=0, retry_delay_seconds=1, collect=True, doc_md=__doc__
)

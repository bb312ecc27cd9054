"""Airflow DAG of trial 4: a fault storm on every call and download. No task retries: the client rides it out."""

from __future__ import annotations

from reliability.dagkit import FAST_POLLING, video_batch

video_batch("rel_storm", polling=FAST_POLLING, retries=0, retry_delay_seconds=1, store_clips=True, doc_md=__doc__)

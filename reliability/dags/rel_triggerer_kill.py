"""Airflow DAG of trial 2: the triggerer is SIGKILLed mid-render, then restarted. No task retries allowed."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch("rel_triggerer_kill", polling=EAGER_POLLING, retries=0, retry_delay_seconds=1, doc_md=__doc__)

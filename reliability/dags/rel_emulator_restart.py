"""Airflow DAG of trial 3: the API (the emulator, with its state file) crashes mid-render and comes back."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch("rel_emulator_restart", polling=EAGER_POLLING, retries=0, retry_delay_seconds=1, doc_md=__doc__)

"""Airflow DAG of trial 4d: trial 4's fault storm in the DashScope dialect (720P clips, with sound there)."""

from __future__ import annotations

from reliability.dagkit import FAST_POLLING, video_batch

video_batch(
    "rel_storm_dashscope",
    polling=FAST_POLLING,
    retries=0,
    retry_delay_seconds=1,
    store_clips=True,
    doc_md=__doc__,
    request_fields={"sound": True, "resolution": "720P"},
)

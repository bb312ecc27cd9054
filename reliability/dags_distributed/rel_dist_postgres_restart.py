"""Airflow DAG of distributed trial D7: PostgreSQL, the metadata DB, restarts mid-run while every task waits in
a triggerer."""

from __future__ import annotations

from reliability.dagkit import EAGER_POLLING, video_batch

video_batch(
    "rel_dist_postgres_restart",
    polling=EAGER_POLLING,
    retries=2,
    retry_delay_seconds=3,
    collect=True,
    doc_md=__doc__,
)

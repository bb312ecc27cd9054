"""
Airflow DAG of trial 1: the worker dies (SIGKILL) right after the submission, before deferring.

Every task of this DAG is a ``reliability.killers.KilledAfterSubmit``: the first try of each task kills itself
the moment the job id is saved in the task state store. The retry must re-attach to that job.
"""

from __future__ import annotations

from reliability.dagkit import FAST_POLLING, video_batch
from reliability.killers import KilledAfterSubmit

video_batch(
    "rel_worker_kill",
    polling=FAST_POLLING,
    retries=2,
    retry_delay_seconds=3,
    operator=KilledAfterSubmit,
    doc_md=__doc__,
)

"""
Airflow DAG of trial 8: the worker dies (SIGKILL) in the middle of storing the clip.

Every task of this DAG is a ``reliability.killers.KilledDuringDownload``: on the first try, the worker that
resumes after the render kills itself after the first downloaded chunk. The retry delay leaves time to look at the
destination folder before the retry stores the clip.
"""

from __future__ import annotations

from reliability.dagkit import FAST_POLLING, video_batch
from reliability.killers import KilledDuringDownload

video_batch(
    "rel_download_kill",
    polling=FAST_POLLING,
    retries=2,
    retry_delay_seconds=8,
    store_clips=True,
    operator=KilledDuringDownload,
    doc_md=__doc__,
)

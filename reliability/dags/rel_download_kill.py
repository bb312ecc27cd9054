"""
Airflow DAG of trial 8: the worker dies (SIGKILL) in the middle of storing the clip.

Every task of this DAG runs with the operator's ``during_download`` fault point armed (the task runner parses
this file, so the variable set below is in its environment): on the first try, the worker that resumes after
the render kills itself after the first downloaded chunk. The retry delay leaves time to look at the
destination folder before the retry stores the clip.
"""

from __future__ import annotations

import os

from airflow_provider_happyhorse.fault_points import DURING_DOWNLOAD, ENV_VAR
from reliability.dagkit import FAST_POLLING, video_batch

os.environ[ENV_VAR] = DURING_DOWNLOAD

video_batch(
    "rel_download_kill",
    polling=FAST_POLLING,
    retries=2,
    retry_delay_seconds=8,
    store_clips=True,
    doc_md=__doc__,
)

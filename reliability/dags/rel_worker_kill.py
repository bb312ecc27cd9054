"""
Airflow DAG of trial 1: the worker dies (SIGKILL) right after the submission, before deferring.

Every task of this DAG runs with the operator's ``after_submit`` fault point armed: the task runner parses
this file, so the variable set below is in its environment, and the first try of each task kills itself the
moment the job id is saved in the task state store. The retry must re-attach to that job.
"""

from __future__ import annotations

import os

from airflow_provider_happyhorse.fault_points import AFTER_SUBMIT, ENV_VAR
from reliability.dagkit import FAST_POLLING, video_batch

os.environ[ENV_VAR] = AFTER_SUBMIT

video_batch("rel_worker_kill", polling=FAST_POLLING, retries=2, retry_delay_seconds=3, doc_md=__doc__)

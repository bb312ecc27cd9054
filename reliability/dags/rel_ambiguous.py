"""
Airflow DAGs of trial 5: submissions whose outcome the client cannot know, one DAG (and API) per fault.

The first try must fail with "outcome unknown", the retry must refuse to submit again, and no request may be
paid for twice.
"""

from __future__ import annotations

from reliability.ambiguous_faults import AMBIGUOUS_FAULTS
from reliability.dagkit import FAST_POLLING, video_batch

for fault in AMBIGUOUS_FAULTS:
    video_batch(fault.dag_id, polling=FAST_POLLING, retries=2, retry_delay_seconds=1, doc_md=__doc__)

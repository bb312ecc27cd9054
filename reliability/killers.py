"""
Operators that kill their own worker on purpose (SIGKILL), on the first try of a task only, so that the
reliability trials can crash a worker at an exact moment and watch what the retry does. They are
subclasses in the suite's own code: nothing in the provider's package can kill a process.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_happyhorse.job_store import JobRecord, JobRecordStore
    from airflow_provider_happyhorse.models import VideoRequest


def _first_try(context: Any) -> bool:
    return int(getattr(context["ti"], "try_number", 1) or 1) == 1


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KilledAfterSubmit(GenerateVideoOperator):
    """The first try dies the moment the job id is saved in the task state store, before deferring."""

    def _submit(self, store: JobRecordStore, request: VideoRequest, context: Context) -> JobRecord:
        record = super()._submit(store, request, context)
        if _first_try(context):
            _die()
        return record


class KilledDuringDownload(GenerateVideoOperator):
    """The first try's worker dies after the first chunk of the clip is written to its temporary file."""

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        self._dies_while_downloading = _first_try(context)
        return super().execute_complete(context, event)

    def _downloaded(self, size: int) -> None:
        if getattr(self, "_dies_while_downloading", False):
            _die()

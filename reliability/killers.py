"""
Operators that kill their own worker on purpose (SIGKILL), or hold it at an exact moment for the trial to kill
it, on the first try of a task only, so that the reliability trials can crash a worker there and watch what the
retry does. They are subclasses in the suite's own code: nothing in the provider's package can kill a process.

The holding ones are for the distributed trials, where the trial SIGKILLs a whole Celery worker (every process
of it) while its tasks wait at that moment: each first try waits there until the trial writes the run's release
file (``<clips_dir>/<dag_id>/<batch>/release``), at most ``HOLD_SECONDS``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_happyhorse.core.record import RenderRecord
    from airflow_provider_happyhorse.job_store import JobRecordStore
    from airflow_provider_happyhorse.models import VideoRequest


def _first_try(context: Any) -> bool:
    return int(getattr(context["ti"], "try_number", 1) or 1) == 1


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


HOLD_SECONDS = 180.0
HELD = "Held by the trial at "  # logged when a try starts to wait, with where


def release_file(clips_dir: str | Path, dag_id: str, batch: str) -> Path:
    return Path(clips_dir) / dag_id / batch / "release"


def _hold(log: Any, context: Any, where: str) -> None:
    """Wait until the run's release file exists (or ``HOLD_SECONDS`` pass); ``log``: the operator's."""
    params = context["params"]
    release = release_file(params["clips_dir"], context["dag"].dag_id, params["batch"])
    log.info("%s%s until %s exists", HELD, where, release)
    deadline = time.monotonic() + HOLD_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


class KilledAfterSubmit(GenerateVideoOperator):
    """The first try dies the moment the job id is saved in the task state store, before deferring."""

    def _submit(self, store: JobRecordStore, request: VideoRequest, context: Context) -> RenderRecord:
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


class HeldAfterSubmit(GenerateVideoOperator):
    """The first try waits for the trial right after the job id is saved in the task state store (before
    deferring): the trial SIGKILLs the worker running it there."""

    def _submit(self, store: JobRecordStore, request: VideoRequest, context: Context) -> RenderRecord:
        record = super()._submit(store, request, context)
        if _first_try(context):
            _hold(self.log, context, "submission")
        return record


class HeldDuringDownload(GenerateVideoOperator):
    """The first try's worker waits for the trial after the first chunk of the clip is in its temporary file:
    the trial SIGKILLs the worker there."""

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        self._held_context = context if _first_try(context) else None
        return super().execute_complete(context, event)

    def _downloaded(self, size: int) -> None:
        context = getattr(self, "_held_context", None)
        if context is not None:
            self._held_context = None
            _hold(self.log, context, "download")

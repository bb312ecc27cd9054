"""
What a task makes of how a job ended: the errors no retry can mend, what a non-success event raises,
and what a clip that could not be kept raises (for the operator and the sensor alike).
"""

from __future__ import annotations

from typing import Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_happyhorse.core.record import StoredClip
from airflow_provider_happyhorse.exceptions import (
    ClipMismatchError,
    DownloadRefusedError,
    HappyHorseError,
    JobFailedError,
    JobTimeoutError,
)
from airflow_provider_happyhorse.job_store import forget_instructions
from airflow_provider_happyhorse.models import JobEvent


def raise_for_event(
    event: JobEvent, *, timeout: type[AirflowException] = AirflowException, cancelled: str | None = None
) -> NoReturn:
    """
    Raise what a non-success event means; the task's retries apply unless the event says no retry can
    help (``event.permanent``, decided by ``core.retries.is_permanent`` when the event was made). A
    deadline raises ``timeout``: a sensor poking on a worker passes ``AirflowSensorTimeout``; ``cancelled``
    says what a cancel at the deadline did, where the service has one.
    """
    if event.status == "failed":
        raise AirflowException(str(JobFailedError(event.job_id, event.message, event.job_status or "FAILED")))
    if event.status == "timeout":
        raise timeout(str(JobTimeoutError(event.job_id, str(event.deadline), cancelled)))
    if event.permanent:
        raise AirflowFailException(f"HappyHorse job {event.job_id}: {event.message}")
    raise AirflowException(f"HappyHorse job {event.job_id}: {event.message}")


def clip_failure(error: HappyHorseError, ti: Any) -> AirflowException:
    """
    A clip that was not kept. A mismatch fails without retries (the job's clip stays what it is), and so
    does a download refused by where it would go (the job's result URL stays where it is); a body that is
    not a video, a broken redirect or a download past its limits fails so that the task's retries download
    again.
    """
    if isinstance(error, DownloadRefusedError):
        return AirflowFailException(str(error))
    if isinstance(error, ClipMismatchError):
        return AirflowFailException(
            f"{error}. Nothing was stored. To keep this clip anyway, set verify_clip='warn' (or 'off') and "
            f"clear the task; to pay for a new render, {forget_instructions(ti)}."
        )
    return AirflowException(str(error))


def log_stored(log: Any, clip: StoredClip, job_id: str, downloaded: bool) -> None:
    media = clip.media
    log.info(
        "%s clip of job %s at %s (%d bytes, sha256 %s%s%s)",
        "Stored" if downloaded else "Already stored (download skipped):",
        job_id,
        clip.path,
        clip.size,
        clip.sha256,
        "" if media is None else f"; {media.width}x{media.height}, {media.duration:g} s, audio {media.has_audio}",
        "" if clip.verified is None else f"; matches its request: {clip.verified}",
    )

"""What a task makes of how a job ended: the errors no retry can mend, and what a non-success event raises."""

from __future__ import annotations

from typing import NoReturn

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_happyhorse.exceptions import (
    AccountError,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    JobFailedError,
    JobTimeoutError,
)
from airflow_provider_happyhorse.models import JobEvent

# Errors that no retry can mend: fail at once, without retry noise.
PERMANENT_ERRORS = (InvalidRequestError, AuthenticationError, AccountError, ConfigurationError)


def raise_for_event(event: JobEvent) -> NoReturn:
    """Raise what a non-success event means; the task's retries apply unless no retry can help."""
    if event.status == "failed":
        raise AirflowException(str(JobFailedError(event.job_id, event.message, event.job_status or "FAILED")))
    if event.status == "timeout":
        raise AirflowException(str(JobTimeoutError(event.job_id, str(event.deadline))))
    if event.error_type in {cls.__name__ for cls in PERMANENT_ERRORS}:
        raise AirflowFailException(f"HappyHorse job {event.job_id}: {event.message}")
    raise AirflowException(f"HappyHorse job {event.job_id}: {event.message}")

"""
Whether and how long to wait before sending a failed request again. A retry is a request sent again
after a failed one; ``max_retries=4`` means at most five requests for one call.

Whether an error is *permanent* (no retry of the task can mend it, so the task fails at once without
retry noise) is decided here too, once: :func:`is_permanent`. A trigger's event carries that decision
(``JobEvent.permanent``), so nothing after the event's JSON round trip matches error class names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from airflow_provider_happyhorse.constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_SUBMIT_MAX_RETRIES,
)
from airflow_provider_happyhorse.exceptions import (
    AccountError,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    HappyHorseError,
    InvalidClipError,
    InvalidRequestError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
    SubmissionOutcomeUnknownError,
    TransportError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; a server's ``Retry-After`` wins, capped."""

    max_retries: int = DEFAULT_MAX_RETRIES
    submit_max_retries: int = DEFAULT_SUBMIT_MAX_RETRIES
    initial_delay: float = DEFAULT_RETRY_INITIAL_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def backoff(self, retry: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (counting from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling: float = min(self.max_delay, self.initial_delay * 2.0 ** (retry - 1))
        return ceiling * rng()


def retry_after_of(error: HappyHorseError) -> float | None:
    return error.retry_after if isinstance(error, APIStatusError) else None


def is_retryable_poll_error(error: HappyHorseError) -> bool:
    """Status polls are free and idempotent: retry anything transient."""
    return isinstance(error, (RateLimitError, ServerError, TransportError, MalformedResponseError))


def poll_retry_delay(
    error: HappyHorseError, failures_in_a_row: int, policy: RetryPolicy, rng: Callable[[], float]
) -> float | None:
    """
    How soon a wait repeats a failed poll, when sooner than its next poll: after a connection failure
    (a kept-alive connection the server closed as it was used, a reset, a timeout) the retry policy's
    backoff. A server that answered (429, 5xx) waits for the schedule or its ``Retry-After``.
    """
    if isinstance(error, TransportError):
        return policy.backoff(failures_in_a_row, None, rng)
    return None


def is_retryable_download_error(error: HappyHorseError) -> bool:
    """A result download: anything transient, and a body that is not a video (a CDN's refusal of a signed URL is
    often momentary)."""
    return is_retryable_poll_error(error) or isinstance(error, InvalidClipError)


# What is sent: a submission (paid), a status request (free, idempotent), a result download (free, idempotent).
Call = Literal["submit", "status", "download"]


def is_retryable(error: HappyHorseError, call: Call) -> bool:
    """Whether ``error`` is transient for this kind of call (else it is permanent: raised at once)."""
    if call == "submit":
        return is_retryable_submit_error(error)
    if call == "download":
        return is_retryable_download_error(error)
    return is_retryable_poll_error(error)


def retry_decision(
    error: HappyHorseError,
    call: Call,
    retries: int,
    max_retries: int,
    policy: RetryPolicy,
    rng: Callable[[], float],
) -> float | None:
    """
    After a failed try of ``call``, ``retries`` retries in: the wait before sending it again, or None when it
    is not sent again (``error`` is permanent for this call, or the ``max_retries`` retries are spent). The
    one place every flow asks; the wait is the policy's (a server's ``Retry-After``, capped, else backoff).
    """
    if retries >= max_retries or not is_retryable(error, call):
        return None
    return policy.backoff(retries + 1, retry_after_of(error), rng)


def is_retryable_submit_error(error: HappyHorseError) -> bool:
    """The contract's submission rule: retry only when no task can have been created."""
    if isinstance(error, TransportError):
        return not error.request_sent
    if isinstance(error, RateLimitError):
        return True
    return isinstance(error, ServerError) and error.status_code == 503 and error.retry_after is not None


def submission_error(error: HappyHorseError) -> HappyHorseError:
    """What a failed submission raises: errors that may hide a created job become 'outcome unknown'."""
    if isinstance(error, (TransportError, MalformedResponseError, ServerError)) and not (
        is_retryable_submit_error(error)
    ):
        return SubmissionOutcomeUnknownError(error)
    return error


# Errors that no retry can mend: the request, the key, the account or the set-up must change first.
PERMANENT_ERRORS: tuple[type[HappyHorseError], ...] = (
    InvalidRequestError,
    AuthenticationError,
    AccountError,
    ConfigurationError,
)


def is_permanent(error: BaseException) -> bool:
    """Whether a task should fail at once on ``error`` rather than let its retries try again."""
    return isinstance(error, PERMANENT_ERRORS)

"""
The provider's errors. Nothing here ever holds the API key or an ``httpx.Request``.

    HappyHorseError
    ├── ConfigurationError ......... refused before sending: the connection or the destination is unusable
    ├── InvalidRequestError ........ refused before sending (local validation) or HTTP 400/422
    ├── APIStatusError ............. the service answered with an error
    │   ├── AuthenticationError .... 401
    │   ├── AccountError ........... 402 no credits / 403 feature not enabled
    │   ├── NotFoundError .......... 404 unknown task id
    │   ├── RateLimitError ......... 429 (``retry_after`` in seconds when given)
    │   └── ServerError ............ 5xx
    ├── MalformedResponseError ..... a 2xx whose body is not the documented JSON
    ├── TransportError ............. no HTTP answer (``request_sent`` says if the body may have left)
    │   └── RequestTimeoutError .... connect, read, write or pool timeout
    ├── SubmissionOutcomeUnknownError  a paid submission that may or may not have created a job
    ├── JobFailedError ............. the job ended FAILED on the service
    ├── JobTimeoutError ............ the job did not finish before its deadline
    ├── ResultUnavailableError ..... the result URL is expired, missing or empty
    ├── ResultRedirectError ........ the result URL redirects in a loop, too often, or off http(s)
    ├── DownloadRefusedError ....... a result URL or redirect goes where downloads may not (nothing fetched)
    ├── DownloadLimitError ......... a download over its size cap or its whole-transfer deadline
    ├── InvalidClipError ........... what the result URL gave is not a video (an error page, a cut file)
    └── ClipMismatchError .......... the clip is a video, but not the one asked for (duration, aspect, audio)

``InvalidRequestError`` is also an ``APIStatusError`` when it comes from the service.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIStatusError",
    "AccountError",
    "AuthenticationError",
    "ClipMismatchError",
    "ConfigurationError",
    "DownloadLimitError",
    "DownloadRefusedError",
    "HappyHorseError",
    "InvalidClipError",
    "InvalidRequestError",
    "JobFailedError",
    "JobTimeoutError",
    "MalformedResponseError",
    "NotFoundError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResultRedirectError",
    "ResultUnavailableError",
    "ServerError",
    "SubmissionOutcomeUnknownError",
    "TransportError",
]


class HappyHorseError(Exception):
    """Base of every error raised by this provider."""


class ConfigurationError(HappyHorseError):
    """
    Something set up outside the request makes it unusable, found before anything is sent: a connection
    that does not exist, has no key or a bad base URL; an output path that cannot be written.
    """

    def __init__(self, subject: str, problem: str, way_out: str) -> None:
        self.subject = subject
        self.problem = problem
        self.way_out = way_out
        super().__init__(f"{subject} {problem}. {way_out}")


class APIStatusError(HappyHorseError):
    """The service answered with an error status (or a 200 whose body ``code`` is an error)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        error_code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.request_id = request_id
        self.retry_after = retry_after  # seconds, when the server sent Retry-After
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.status_code is None:  # refused here, before sending: the message says it all
            return self.message
        parts = [f"HTTP {self.status_code}"]
        if self.error_code:
            parts.append(self.error_code)
        text = f"{type(self).__name__} ({', '.join(parts)}): {self.message}"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text


class InvalidRequestError(APIStatusError):
    """The request breaks a documented rule. Raised locally before any request is sent, or on 400/422."""

    def __init__(self, message: str, *, status_code: int | None = None, **details: Any) -> None:
        super().__init__(message, status_code=status_code, **details)


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class AccountError(APIStatusError):
    """402 (no credits) or 403 (feature not enabled for the account)."""


class NotFoundError(APIStatusError):
    """404: the service does not know this task id."""


class RateLimitError(APIStatusError):
    """429: slow down; ``retry_after`` is the server's wait in seconds, when it gave one."""

    def __init__(self, message: str, *, status_code: int | None = 429, **details: Any) -> None:
        super().__init__(message, status_code=status_code, **details)


class ServerError(APIStatusError):
    """5xx: trouble on the service's side; ``retry_after`` when a 503 gave one."""


class MalformedResponseError(HappyHorseError):
    """A success status whose body is not the documented JSON."""

    def __init__(self, message: str, *, status_code: int, request_id: str | None = None) -> None:
        self.status_code = status_code
        self.request_id = request_id
        super().__init__(f"MalformedResponseError (HTTP {status_code}): {message}")


class TransportError(HappyHorseError):
    """No HTTP answer. ``request_sent`` is False only when the request surely never left."""

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class RequestTimeoutError(TransportError):
    """A connect, read, write or pool timeout."""


class SubmissionOutcomeUnknownError(HappyHorseError):
    """A paid submission may have created a job whose id we never received."""

    def __init__(self, cause: HappyHorseError) -> None:
        self.cause = cause
        super().__init__(
            "The submission's outcome is unknown: the request reached the service but no usable answer "
            f"came back ({cause}). A job may have been created and billed. Look for it in the HappyHorse "
            "dashboard before submitting again; this provider will not resubmit it on its own."
        )


class JobFailedError(HappyHorseError):
    """The job ended in a failed state on the service."""

    def __init__(self, job_id: str, reason: str | None, status: str) -> None:
        self.job_id = job_id
        self.reason = reason
        self.status = status
        super().__init__(f"HappyHorse job {job_id} ended {status}: {reason or 'no reason given'}")


class JobTimeoutError(HappyHorseError):
    """The job was still running at its deadline (it keeps running, and billing, on the service)."""

    def __init__(self, job_id: str, deadline: str, cancelled: str | None = None) -> None:
        self.job_id = job_id
        self.deadline = deadline
        # What a cancel at the deadline did, where the service has one; None: today's words.
        tail = "it may still complete on the service (there is no cancel endpoint)." if cancelled is None else cancelled
        super().__init__(f"HappyHorse job {job_id} did not finish before its deadline {deadline}; {tail}")


class ResultUnavailableError(HappyHorseError):
    """The job's result file cannot be fetched (result URLs are temporary, about a day)."""

    def __init__(self, job_id: str, url: str, detail: str) -> None:
        self.job_id = job_id
        self.url = url
        super().__init__(
            f"The video of HappyHorse job {job_id} cannot be fetched from {url}: {detail}. Result URLs expire "
            "after about a day."
        )


class ResultRedirectError(HappyHorseError):
    """The result URL's redirects cannot be followed: a loop, too many hops, or a scheme other than http(s)."""

    def __init__(self, job_id: str, chain: list[str], problem: str) -> None:
        self.job_id = job_id
        self.chain = chain
        super().__init__(
            f"The video of HappyHorse job {job_id} was not downloaded: its result URL {problem} "
            f"({' -> '.join(chain)}). Nothing was stored; a retry downloads again."
        )


class DownloadRefusedError(HappyHorseError):
    """A result URL (or a redirect hop) that downloads may not follow: see ``core.egress``. Nothing was fetched."""

    def __init__(self, job_id: str, host: str, rule: str) -> None:
        self.job_id = job_id
        self.host = host
        self.rule = rule
        super().__init__(
            f"The video of HappyHorse job {job_id} was not downloaded: the URL on host {host!r} {rule}. "
            "Nothing was fetched from it. If the host is your own CDN or proxy, allow it with the connection "
            "extra allowed_download_hosts (host names or CIDR blocks)."
        )


class DownloadLimitError(HappyHorseError):
    """A download that went past the connection's ``max_download_bytes`` or ``download_timeout``."""

    def __init__(self, job_id: str, host: str, detail: str) -> None:
        self.job_id = job_id
        self.host = host
        super().__init__(
            f"The video of HappyHorse job {job_id} from host {host!r} was not stored: {detail}. Nothing was "
            "stored; raise the connection extra if the clip is really that large or slow, and the task's "
            "retries download again."
        )


class InvalidClipError(HappyHorseError):
    """What the result URL answered is not a video container with a video stream."""

    def __init__(self, job_id: str, url: str, what_came: str) -> None:
        self.job_id = job_id
        self.url = url
        super().__init__(
            f"The result of HappyHorse job {job_id} from {url} is not a video: {what_came}. Nothing was "
            "stored; a retry of the task downloads again (a refused or expired signed URL often answers like this)."
        )


class ClipMismatchError(HappyHorseError):
    """The clip is a video, but not the one the request asked for."""

    def __init__(self, job_id: str, mismatches: list[str]) -> None:
        self.job_id = job_id
        self.mismatches = mismatches
        super().__init__(f"The clip of HappyHorse job {job_id} does not match its request: {'; '.join(mismatches)}")

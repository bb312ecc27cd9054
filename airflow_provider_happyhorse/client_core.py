"""
Every decision about talking to HappyHorse, with no I/O: building the two requests, reading answers,
mapping failures to the error tree, whether and how long to wait before another attempt, and when to
poll a job. The sync and async hooks drive :func:`submit_flow` and :func:`status_flow` and only send
and sleep (the shape of httpx's own auth flows).
"""

from __future__ import annotations

import email.utils
import json
import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from airflow_provider_happyhorse.exceptions import (
    AccountError,
    APIStatusError,
    AuthenticationError,
    HappyHorseError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmissionOutcomeUnknownError,
    TransportError,
)
from airflow_provider_happyhorse.models import JobStatus, VideoRequest, classify_status

DEFAULT_BASE_URL = "https://happyhorse.app"
GENERATE_PATH = "/api/generate"
STATUS_PATH = "/api/status"
USER_AGENT = "airflow-provider-happyhorse"

# Retry policy defaults (see RetryPolicy).
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_SUBMIT_MAX_ATTEMPTS = 4
DEFAULT_INITIAL_DELAY = 1.0
DEFAULT_MAX_DELAY = 30.0
DEFAULT_MAX_RETRY_AFTER = 300.0
DEFAULT_TIMEOUT = 30.0

# ---------------------------------------------------------------------------------------------------
# URLs and requests


def normalize_base_url(host: str | None, *, scheme: str | None = None, path_prefix: str | None = None) -> str:
    """
    A connection's host as a base URL: scheme defaults to https, a path in it is kept (proxies), and so
    is ``path_prefix``: the path of a connection URI (``happyhorse://:KEY@host/prefix``), which Airflow
    keeps in the connection's schema field (hidden in the form).
    """
    if not host:
        return DEFAULT_BASE_URL
    raw = host.strip()
    if "://" not in raw:
        raw = f"{scheme or 'https'}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"HappyHorse base URL must be an http(s) URL, got {host!r}")
    path = parts.path.rstrip("/")
    if path_prefix:
        path = f"{path}/{path_prefix.strip('/')}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}


def _timeout(seconds: float) -> dict[str, dict[str, float | None]]:
    # On the request itself: the async path sends through a transport, without a client to add it.
    return {"timeout": httpx.Timeout(seconds).as_dict()}


def build_submit_request(
    base_url: str, api_key: str, request: VideoRequest, *, timeout: float = DEFAULT_TIMEOUT
) -> httpx.Request:
    return httpx.Request(
        "POST",
        base_url + GENERATE_PATH,
        headers=_headers(api_key),
        json=request.to_body(),
        extensions=_timeout(timeout),
    )


def build_status_request(
    base_url: str, api_key: str, job_id: str, *, timeout: float = DEFAULT_TIMEOUT
) -> httpx.Request:
    return httpx.Request(
        "GET",
        base_url + STATUS_PATH,
        headers=_headers(api_key),
        params={"task_id": job_id},
        extensions=_timeout(timeout),
    )


# ---------------------------------------------------------------------------------------------------
# Reading answers


def _request_id(response: httpx.Response, body: Any) -> str | None:
    for header in ("x-request-id", "request-id", "x-trace-id"):
        if value := response.headers.get(header):
            return str(value)
    if isinstance(body, dict) and isinstance(request_id := body.get("request_id"), str):
        return request_id
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds, from either form (delta-seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # delta-seconds is a non-negative integer (RFC 9110); a negative or non-finite one is unusable.
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    # A date in the past means "now".
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _error_from_body(body: Any, fallback: str) -> tuple[str, str | None]:
    """(message, error code) from either documented error shape."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            return str(error.get("message") or fallback), None if code is None else str(code)
        if isinstance(error, str) and error:
            return error, None
        if isinstance(body.get("message"), str) and body["message"]:
            return str(body["message"]), None
    return fallback, None


def error_for_status(
    status_code: int, body: Any, response: httpx.Response, *, now: datetime | None = None
) -> APIStatusError:
    """The typed error for an HTTP error status (or a body ``code`` that is an error)."""
    message, error_code = _error_from_body(body, response.reason_phrase or "error")
    request_id = _request_id(response, body)
    retry_after = parse_retry_after(response.headers.get("retry-after"), now=now)
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "error_code": error_code,
        "request_id": request_id,
        "retry_after": retry_after,
    }
    if status_code in (400, 422):
        return InvalidRequestError(message, **kwargs)
    if status_code == 401:
        return AuthenticationError(message, **kwargs)
    if status_code in (402, 403):
        return AccountError(message, **kwargs)
    if status_code == 404:
        return NotFoundError(message, **kwargs)
    if status_code == 429:
        return RateLimitError(message, **kwargs)
    if status_code >= 500:
        return ServerError(message, **kwargs)
    return APIStatusError(message, **kwargs)


def _read_envelope(response: httpx.Response, *, now: datetime | None = None) -> tuple[dict[str, Any], Any]:
    """The ``data`` object of a successful answer and the whole body, or the typed error the answer stands for."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if response.status_code >= 400:
        raise error_for_status(response.status_code, body, response, now=now)
    if not isinstance(body, dict):
        raise MalformedResponseError("body is not a JSON object", status_code=response.status_code)
    code = body.get("code")
    if code is not None and str(code) != "200":
        # A 200 whose body says otherwise is an error too (the service does this).
        try:
            code_number = int(code)
        except (TypeError, ValueError):
            code_number = 500
        raise error_for_status(code_number, body, response, now=now)
    data = body.get("data")
    if not isinstance(data, dict):
        raise MalformedResponseError("body has no 'data' object", status_code=response.status_code)
    return data, body


def parse_job(data: dict[str, Any], *, top_level_message: str | None = None) -> JobStatus:
    job_id = data.get("task_id")
    status = data.get("status")
    if not isinstance(job_id, str) or not job_id or not isinstance(status, str):
        raise MalformedResponseError("'data' lacks task_id or status", status_code=200)
    state = classify_status(status)
    video_url = None
    response_field = data.get("response")
    if isinstance(response_field, dict):
        urls = response_field.get("resultUrls") or response_field.get("result_urls")
        if isinstance(urls, list) and urls and isinstance(urls[0], str):
            video_url = urls[0]
    error_message = None
    for key in ("error_message", "error", "fail_reason", "errorMessage", "failMsg"):
        value = data.get(key)
        if isinstance(value, str) and value:
            error_message = value
            break
    if error_message is None and state.value == "failed" and top_level_message not in (None, "success"):
        error_message = top_level_message
    if state.value == "succeeded" and video_url is None:
        raise MalformedResponseError(f"job {job_id} is {status} but has no resultUrls", status_code=200)
    return JobStatus(job_id=job_id, status=status, state=state, video_url=video_url, error_message=error_message)


def parse_job_response(response: httpx.Response, *, now: datetime | None = None) -> JobStatus:
    data, body = _read_envelope(response, now=now)
    message = body.get("message")
    return parse_job(data, top_level_message=message if isinstance(message, str) else None)


def map_transport_error(exc: httpx.TransportError) -> TransportError:
    """Whether the request surely never left decides if a paid submission may be retried."""
    not_sent = request_surely_not_sent(exc)
    name = type(exc).__name__
    cause = exc.__cause__
    cause_name = None if cause is None else type(cause).__name__
    detail = f"{name}: {exc}" if cause_name in (None, name) else f"{name} ({cause_name}): {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(detail, request_sent=not not_sent)
    return TransportError(detail, request_sent=not not_sent)


def request_surely_not_sent(exc: httpx.TransportError) -> bool:
    """
    True only for failures that happen before a request can reach the server: connection refused,
    DNS failure, connect timeout, no free connection in the pool. Both paths' transports raise these
    httpx errors only then (see ``aiohttp_transport.httpx_error``).
    """
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


# ---------------------------------------------------------------------------------------------------
# Retry policy


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; a server's ``Retry-After`` wins, capped."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    submit_max_attempts: int = DEFAULT_SUBMIT_MAX_ATTEMPTS
    initial_delay: float = DEFAULT_INITIAL_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def backoff(self, attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """The wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling: float = min(self.max_delay, self.initial_delay * 2.0 ** (attempt - 1))
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
    How soon a poll schedule repeats a failed poll, when sooner than its next poll: after a connection
    failure (a kept-alive connection the server closed as it was used, a reset, a timeout) the retry
    policy's backoff. A server that answered (429, 5xx) waits for the schedule or its ``Retry-After``.
    """
    if isinstance(error, TransportError):
        return policy.backoff(failures_in_a_row, None, rng)
    return None


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


# ---------------------------------------------------------------------------------------------------
# Flows: generators that yield what to do (send a request, sleep) and return the result.


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float
    reason: str


Action = Send | Sleep
Outcome = httpx.Response | httpx.TransportError | None
T = TypeVar("T")
Flow = Generator[Action, Outcome, T]


def _call(
    request: httpx.Request,
    parse: Callable[[httpx.Response], T],
    *,
    max_attempts: int,
    retryable: Callable[[HappyHorseError], bool],
    policy: RetryPolicy,
    rng: Callable[[], float],
    on_retry: Callable[[HappyHorseError, int, float], None] | None,
    secret: str,
) -> Flow[T]:
    attempt = 0
    while True:
        attempt += 1
        outcome = yield Send(request)
        try:
            if isinstance(outcome, httpx.TransportError):
                raise map_transport_error(outcome) from None
            if not isinstance(outcome, httpx.Response):
                raise TypeError(f"a flow must be sent a response or a transport error, not {outcome!r}")
            return parse(outcome)
        except HappyHorseError as error:
            redact(error, secret)
            if attempt >= max_attempts or not retryable(error):
                raise
            delay = policy.backoff(attempt, retry_after_of(error), rng)
            if on_retry is not None:
                on_retry(error, attempt, delay)
            yield Sleep(delay, reason=str(error))


def redact(error: HappyHorseError, secret: str) -> None:
    """Scrub the key from an error's text, in case a server or proxy echoed it back."""
    if not secret or secret not in str(error):
        return
    error.args = tuple(str(arg).replace(secret, "***") for arg in error.args)
    if isinstance(error, APIStatusError):
        error.message = error.message.replace(secret, "***")


def parse_submit_response(response: httpx.Response) -> JobStatus:
    data, _ = _read_envelope(response)
    if not isinstance(data.get("task_id"), str) or not data["task_id"]:
        raise MalformedResponseError("submission answer has no task_id", status_code=response.status_code)
    return parse_job({"status": "IN_PROGRESS", **data})


def submit_flow(
    base_url: str,
    api_key: str,
    request: VideoRequest,
    policy: RetryPolicy,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[HappyHorseError, int, float], None] | None = None,
) -> Flow[JobStatus]:
    """Submit once; retry only where the contract's submission rule allows."""
    try:
        return (
            yield from _call(
                build_submit_request(base_url, api_key, request, timeout=timeout),
                parse_submit_response,
                max_attempts=policy.submit_max_attempts,
                retryable=is_retryable_submit_error,
                policy=policy,
                rng=rng,
                on_retry=on_retry,
                secret=api_key,
            )
        )
    except HappyHorseError as error:
        raised = submission_error(error)
        if raised is error:
            raise
        raise raised from None


def status_flow(
    base_url: str,
    api_key: str,
    job_id: str,
    policy: RetryPolicy,
    *,
    max_attempts: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[HappyHorseError, int, float], None] | None = None,
) -> Flow[JobStatus]:
    return (
        yield from _call(
            build_status_request(base_url, api_key, job_id, timeout=timeout),
            parse_job_response,
            max_attempts=policy.max_attempts if max_attempts is None else max_attempts,
            retryable=is_retryable_poll_error,
            policy=policy,
            rng=rng,
            on_retry=on_retry,
            secret=api_key,
        )
    )


# ---------------------------------------------------------------------------------------------------
# Connection check: is this HappyHorse, and did it check the key? (No job is created.)

CHECK_JOB_ID = "airflow-connection-test"


def _looks_like_happyhorse(response: httpx.Response) -> bool:
    """A JSON body in one of the service's two documented shapes (code + message, or error)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(body, dict) and (("code" in body and "message" in body) or isinstance(body.get("error"), dict))


def _shown(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return f"HTTP {response.status_code}, {kind}: {text[:120]!r}"


def check_flow(base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> Flow[tuple[bool, str]]:
    """
    Ask for the status of a job that does not exist, with the key and then without it. HappyHorse
    answers 404 in its own error shape with a valid key and 401 without one; anything else is a wrong
    key, a foreign server, a wrong path prefix, or a host that cannot be reached, each said apart.
    """
    status_url = base_url + STATUS_PATH
    keyed = yield Send(build_status_request(base_url, api_key, CHECK_JOB_ID, timeout=timeout))
    if isinstance(keyed, httpx.TransportError):
        return False, (
            f"Could not reach {base_url}: {map_transport_error(keyed)}. Check the Base URL's host and port, "
            "and that this machine can reach it (the environment's proxy settings apply)."
        )
    if not isinstance(keyed, httpx.Response):
        raise TypeError(f"a flow must be sent a response or a transport error, not {keyed!r}")
    if not _looks_like_happyhorse(keyed) or keyed.status_code < 400:
        # A job for a made-up id is no better a sign than a foreign body.
        return False, (
            f"{base_url} does not answer like HappyHorse: GET {status_url} gave {_shown(keyed)}. Check the "
            "Base URL: it is the address the API's /api/... paths hang from, e.g. https://happyhorse.app."
        )
    error = error_for_status(keyed.status_code, keyed.json(), keyed)
    if isinstance(error, AuthenticationError):
        return False, (
            f"The API key was refused by {base_url} (HTTP 401: {error.message}). Copy the key again from "
            "the HappyHorse dashboard's API Keys page into the API key field."
        )
    if isinstance(error, AccountError):
        return False, f"{base_url} accepted no work for this key (HTTP {error.status_code}: {error.message})."
    if not isinstance(error, NotFoundError):
        return False, f"{base_url} answered GET {status_url} with {_shown(keyed)}: it may be in trouble; try again."
    request = build_status_request(base_url, "", CHECK_JOB_ID, timeout=timeout)
    del request.headers["Authorization"]
    anonymous = yield Send(request)
    if isinstance(anonymous, httpx.Response) and anonymous.status_code == 401:
        return True, f"Connected to {base_url}: HappyHorse checked the API key and accepted it."
    got = _shown(anonymous) if isinstance(anonymous, httpx.Response) else str(anonymous)
    return False, (
        f"{base_url} answers GET {status_url} without checking the API key (without a key: {got}), so it "
        "is not HappyHorse's API there: the Base URL or its path prefix is wrong. The API's paths are "
        "/api/generate and /api/status under the Base URL."
    )


# ---------------------------------------------------------------------------------------------------
# Poll schedule

# A render-time model for the first poll: base + per second of video, pro and audio slower. Tuned on
# the contract's figures (a 5 s std clip with sound in about 40-60 s); users can override it.
RENDER_BASE_SECONDS = 20.0
RENDER_SECONDS_PER_VIDEO_SECOND = 3.0
RENDER_PRO_FACTOR = 1.5
RENDER_AUDIO_FACTOR = 1.2


def expected_render_seconds(mode: str, duration: float, sound: bool) -> float:
    seconds = RENDER_BASE_SECONDS + RENDER_SECONDS_PER_VIDEO_SECOND * duration
    if mode == "pro":
        seconds *= RENDER_PRO_FACTOR
    if sound:
        seconds *= RENDER_AUDIO_FACTOR
    return seconds


# Detection target: see a finished job within DETECTION_SLACK + DETECTION_SHARE x its render time.
DETECTION_SLACK = 2.0
DETECTION_SHARE = 0.1
# How far real renders stray from the model either way (the emulator's default jitter).
RENDER_SPREAD = 0.1
# Polls end their waits on whole ticks of the wall clock: see PollSchedule.next_delay.
POLL_TICK = 1.0


def first_poll_for(expected_seconds: float) -> float:
    """The first poll: the earliest likely finish, plus the delay the detection target allows there."""
    earliest = expected_seconds * (1 - RENDER_SPREAD)
    return earliest * (1 + DETECTION_SHARE) + DETECTION_SLACK


@dataclass(frozen=True)
class PollSchedule:
    """
    When to poll a job. The first poll comes at ``first_poll_after`` (by default ``first_poll_for`` the
    expected render time); after that each wait is ``slack + growth x`` the time already spent, clamped
    to [min_interval, max_interval], so a job is seen within about ``slack + growth x`` its render time
    while the number of polls grows only logarithmically. Jitter only ever shortens a wait, so jobs
    submitted together spread out without missing that target. Never past the deadline.

    Given the wall-clock time, a wait is also shortened to end on a ``tick`` (at most half the floor),
    unless that would break the floor: polls of many jobs that fall due within one tick then share one
    wake-up of the triggerer's event loop. On a virtual machine a wake-up from idle costs about as
    much CPU as a whole status request (README, "Triggerer scale"); a poll is never made later by it.
    """

    first_poll_after: float
    min_interval: float = 2.0
    max_interval: float = 120.0
    growth: float = DETECTION_SHARE
    slack: float = DETECTION_SLACK
    jitter: float = 0.1
    tick: float = POLL_TICK

    def next_delay(
        self,
        *,
        elapsed: float,
        polls_done: int,
        remaining: float,
        rng: Callable[[], float],
        now: float | None = None,
    ) -> float:
        """Seconds to wait before the next poll; ``now`` (epoch seconds) puts its end on a tick."""
        if polls_done == 0:
            base = max(self.first_poll_after - elapsed, 0.0)
        else:
            base = min(max(self.slack + self.growth * elapsed, self.min_interval), self.max_interval)
        # |2u - 1| is uniform on [0, 1] like u, and a middle draw means no jitter at all.
        jittered = base * (1 - self.jitter * abs(2 * rng() - 1))
        if polls_done > 0:
            jittered = max(jittered, self.min_interval)  # the floor holds whatever the jitter
        delay = max(0.0, min(jittered, remaining))
        tick = min(self.tick, self.min_interval / 2)
        if now is None or tick <= 0:
            return delay
        on_tick = math.floor((now + delay) / tick) * tick - now
        if polls_done > 0 and on_tick < self.min_interval:
            return delay
        return max(on_tick, 0.0)

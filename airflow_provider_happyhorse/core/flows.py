"""
Flows: generators that yield what to do (send a request, fetch a result file, sleep) and return the result.
The hook drives them, sync and async alike, and only sends, fetches and sleeps; tests drive them with scripted
outcomes. Whether a failed try is tried again, and after how long, is ``core.retries.retry_decision``'s alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import httpx

from airflow_provider_happyhorse.constants import CHECK_JOB_ID, STATUS_PATH
from airflow_provider_happyhorse.core.responses import (
    error_for_status,
    json_body,
    map_transport_error,
    redact,
)
from airflow_provider_happyhorse.core.retries import Call, RetryPolicy, retry_decision, submission_error
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.exceptions import AccountError, AuthenticationError, HappyHorseError, NotFoundError
from airflow_provider_happyhorse.models import JobState, JobStatus, VideoRequest


@dataclass(frozen=True)
class Send:
    request: httpx.Request
    # A status query: the driver waits for the connection's query bucket first (``core.pacing``).
    query: bool = False
    # A wait's query: when its job's detection allowance ends (``core.wait.WaitPlan.detect_by``), which decides
    # its place among the polls waiting for the bucket. None: a query outside a wait.
    detect_by: datetime | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float
    reason: str


Action = Send | Sleep
Outcome = httpx.Response | httpx.TransportError | None
T = TypeVar("T")
Flow = Generator[Action, Outcome, T]
# (the error, which retry this is (from 1), the wait before it): the hook logs it.
OnRetry = Callable[[HappyHorseError, int, float], None]


def _response(outcome: Outcome) -> httpx.Response:
    """What a Send got back, as a response; a transport error raises its typed error."""
    if isinstance(outcome, httpx.TransportError):
        raise map_transport_error(outcome) from None
    if not isinstance(outcome, httpx.Response):
        raise TypeError(f"a flow must be sent a response or a transport error, not {outcome!r}")
    return outcome


def call(
    request: httpx.Request,
    parse: Callable[[httpx.Response], T],
    *,
    kind: Call,
    max_retries: int,
    policy: RetryPolicy,
    rng: Callable[[], float],
    on_retry: OnRetry | None,
    secret: str,
    detect_by: datetime | None = None,
) -> Flow[T]:
    """Send ``request`` and parse the answer; send it again after the wait ``retry_decision`` gives, if it gives one."""
    retries = 0
    while True:
        outcome = yield Send(request, query=kind == "status", detect_by=detect_by)
        try:
            return parse(_response(outcome))
        except HappyHorseError as error:
            redact(error, secret)
            delay = retry_decision(error, kind, retries, max_retries, policy, rng)
            if delay is None:
                raise
            retries += 1
            if on_retry is not None:
                on_retry(error, retries, delay)
            yield Sleep(delay, reason=str(error))


def submit_flow(
    settings: ConnectionSettings,
    request: VideoRequest,
    *,
    rng: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
) -> Flow[JobStatus]:
    """Submit once; send again only where the contract's submission rule allows."""
    try:
        return (
            yield from call(
                settings.dialect.submit_request(
                    settings.base_url,
                    settings.api_key,
                    request,
                    timeout=settings.timeout,
                    max_answer_bytes=settings.max_answer_bytes,
                ),
                settings.dialect.parse_submit,
                kind="submit",
                max_retries=settings.policy.submit_max_retries,
                policy=settings.policy,
                rng=rng,
                on_retry=on_retry,
                secret=settings.api_key,
            )
        )
    except HappyHorseError as error:
        raised = submission_error(error)
        if raised is error:
            raise
        raise raised from None


def _status_request(settings: ConnectionSettings, job_id: str, *, keyless: bool = False) -> httpx.Request:
    return settings.dialect.status_request(
        settings.base_url,
        None if keyless else settings.api_key,
        job_id,
        timeout=settings.timeout,
        max_answer_bytes=settings.max_answer_bytes,
    )


def status_flow(
    settings: ConnectionSettings,
    job_id: str,
    *,
    max_retries: int | None = None,
    rng: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
    detect_by: datetime | None = None,
) -> Flow[JobStatus]:
    """
    A job's status; ``max_retries`` defaults to the connection's (a wait's polls use 0). ``detect_by``: a wait's
    poll says when its job's detection allowance ends (``Send.detect_by``).
    """
    return (
        yield from call(
            _status_request(settings, job_id),
            settings.dialect.parse_status,
            kind="status",
            max_retries=settings.policy.max_retries if max_retries is None else max_retries,
            policy=settings.policy,
            rng=rng,
            on_retry=on_retry,
            secret=settings.api_key,
            detect_by=detect_by,
        )
    )


# ---------------------------------------------------------------------------------------------------
# Cancelling a job that is still queued, where the service allows it (``Dialect.offers_cancel``).


@dataclass(frozen=True)
class Cancellation:
    """
    What a cancel did: ``cancelled`` (nothing billed), ``running`` (too late: billed), ``ended`` (the job had
    already ended: nothing to cancel), or ``unknown``.
    """

    outcome: str
    message: str


def cancel_flow(settings: ConnectionSettings, job_id: str) -> Flow[Cancellation | None]:
    """
    Cancel ``job_id`` once (a kill or a deadline does not wait for retries); None when the connection's
    service has no cancel. The service cancels only a queued job: any other is left running, and billed.
    """
    dialect = settings.dialect
    request = dialect.cancel_request(
        settings.base_url,
        settings.api_key,
        job_id,
        timeout=settings.timeout,
        max_answer_bytes=settings.max_answer_bytes,
    )
    if request is None:
        return None
    outcome = yield Send(request)
    where = dialect.title
    if isinstance(outcome, httpx.Response) and outcome.status_code < 300:
        return Cancellation(
            "cancelled", f"Cancelled job {job_id} on {where} while it was still queued (PENDING): nothing was billed."
        )
    if isinstance(outcome, httpx.Response):
        error = dialect.error_of(outcome.status_code, json_body(outcome), outcome)
        redact(error, settings.api_key)
        if error.error_code == "UnsupportedOperation":
            return Cancellation(
                "running",
                f"Job {job_id} had already left the queue on {where}, which cancels only queued jobs: it runs to "
                "its end and will be billed.",
            )
        problem = str(error)
    else:
        problem = str(map_transport_error(outcome)) if isinstance(outcome, httpx.TransportError) else "no answer"
    return Cancellation(
        "unknown",
        f"Could not cancel job {job_id} on {where} ({problem}): it may run to its end and be billed.",
    )


def cancel_if_queued_flow(settings: ConnectionSettings, job_id: str) -> Flow[Cancellation | None]:
    """
    Read ``job_id``'s status once, and cancel it only if it is still queued (a killed deferred task's trigger): a
    job already rendering or ended gets no cancel request, and the answer says what it costs. When its status
    cannot be read, the cancel is sent anyway (the service itself refuses it for a job that left the queue). None
    when the connection's service has no cancel.
    """
    dialect = settings.dialect
    if not dialect.offers_cancel:
        return None
    where = dialect.title
    try:
        job: JobStatus | None = yield from status_flow(settings, job_id, max_retries=0)
    except HappyHorseError:
        job = None
    if job is not None and job.state is not JobState.PENDING:
        return Cancellation(
            "ended", f"Job {job_id} had already ended ({job.status}) on {where}: there was nothing to cancel."
        )
    if job is not None and not job.is_queued:
        return Cancellation(
            "running",
            f"Job {job_id} was already rendering ({job.status}) on {where}, which cancels only queued jobs: no cancel "
            "was sent, it was left running, runs to its end and will be billed.",
        )
    return (yield from cancel_flow(settings, job_id))


# ---------------------------------------------------------------------------------------------------
# Downloading a result: the driver fetches (streams, hashes and reads the file), the flow decides again or not.


@dataclass(frozen=True)
class Fetch:
    """One try at downloading a job's result file: the driver answers with what it got or the error it met."""

    job_id: str
    url: str


DownloadFlow = Generator[Fetch | Sleep, T | HappyHorseError | None, T]


def download_flow(
    policy: RetryPolicy,
    job_id: str,
    url: str,
    *,
    rng: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
) -> DownloadFlow[T]:
    """
    Download a job's result, again after a transient failure or a body that is not a video, up to the
    policy's ``max_retries`` retries, each after the wait ``retry_decision`` gives; a permanent error, or
    the last one, is raised.
    """
    retries = 0
    while True:
        outcome = yield Fetch(job_id, url)
        if not isinstance(outcome, HappyHorseError):
            if outcome is None:
                raise TypeError("a download flow must be sent what the fetch got, or its error")
            return outcome
        delay = retry_decision(outcome, "download", retries, policy.max_retries, policy, rng)
        if delay is None:
            raise outcome
        retries += 1
        if on_retry is not None:
            on_retry(outcome, retries, delay)
        yield Sleep(delay, reason=str(outcome))


# ---------------------------------------------------------------------------------------------------
# Connection check: is this HappyHorse, and did it check the key? (No job is created.)


def _looks_like_happyhorse(response: httpx.Response) -> bool:
    """A JSON body in one of the service's two documented shapes (code + message, or error)."""
    body = json_body(response)
    return isinstance(body, dict) and (("code" in body and "message" in body) or isinstance(body.get("error"), dict))


def _shown(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return f"HTTP {response.status_code}, {kind}: {text[:120]!r}"


def check_flow(settings: ConnectionSettings) -> Flow[tuple[bool, str]]:
    """
    Ask for the status of a job that does not exist, with the key and then without it. HappyHorse
    answers 404 in its own error shape with a valid key and 401 without one; anything else is a wrong
    key, a foreign server, a wrong path prefix, or a host that cannot be reached, each said apart.
    """
    if settings.dialect_name == "dashscope":
        return (yield from _dashscope_check_flow(settings))
    base_url = settings.base_url
    status_url = base_url + STATUS_PATH
    keyed = yield Send(_status_request(settings, CHECK_JOB_ID), query=True)
    if isinstance(keyed, httpx.TransportError):
        return False, (
            f"Could not reach {base_url}: {map_transport_error(keyed)}. Check the Base URL's host and port, "
            "and that this machine can reach it (the environment's proxy settings apply)."
        )
    keyed = _response(keyed)
    if not _looks_like_happyhorse(keyed) or keyed.status_code < 400:
        # A job for a made-up id is no better a sign than a foreign body.
        return False, (
            f"{base_url} does not answer like HappyHorse: GET {status_url} gave {_shown(keyed)}. Check the "
            "Base URL: it is the address the API's /api/... paths hang from, e.g. https://happyhorse.app."
        )
    error = error_for_status(keyed.status_code, json_body(keyed), keyed)
    if isinstance(error, AuthenticationError):
        return False, (
            f"The API key was refused by {base_url} (HTTP 401: {error.message}). Copy the key again from "
            "the HappyHorse dashboard's API Keys page into the API key field."
        )
    if isinstance(error, AccountError):
        return False, f"{base_url} accepted no work for this key (HTTP {error.status_code}: {error.message})."
    if not isinstance(error, NotFoundError):
        return False, f"{base_url} answered GET {status_url} with {_shown(keyed)}: it may be in trouble; try again."
    anonymous = yield Send(_status_request(settings, CHECK_JOB_ID, keyless=True), query=True)
    if isinstance(anonymous, httpx.Response) and anonymous.status_code == 401:
        return True, f"Connected to {base_url}: HappyHorse checked the API key and accepted it."
    got = _shown(anonymous) if isinstance(anonymous, httpx.Response) else str(anonymous)
    return False, (
        f"{base_url} answers GET {status_url} without checking the API key (without a key: {got}), so it "
        "is not HappyHorse's API there: the Base URL or its path prefix is wrong. The API's paths are "
        "/api/generate and /api/status under the Base URL."
    )


def _dashscope_check_flow(settings: ConnectionSettings) -> Flow[tuple[bool, str]]:
    """
    DashScope's check: the status of a task that does not exist is 200 UNKNOWN with a valid key and 401
    InvalidApiKey with a wrong one (and without one).
    """
    base_url = settings.base_url
    request = _status_request(settings, CHECK_JOB_ID)
    status_url = str(request.url)
    keyed = yield Send(request, query=True)
    if isinstance(keyed, httpx.TransportError):
        return False, (
            f"Could not reach {base_url}: {map_transport_error(keyed)}. Check the Base URL's host and port, "
            "and that this machine can reach it (the environment's proxy settings apply)."
        )
    keyed = _response(keyed)
    body = json_body(keyed)
    if keyed.status_code == 200:
        output = body.get("output") if isinstance(body, dict) else None
        if isinstance(output, dict) and output.get("task_status") == "UNKNOWN":
            return True, f"Connected to {base_url}: Alibaba Cloud Model Studio (DashScope) accepted the API key."
    elif isinstance(body, dict) and "code" in body:
        error = settings.dialect.error_of(keyed.status_code, body, keyed)
        if isinstance(error, AuthenticationError):
            return False, (
                f"The API key was refused by {base_url} (HTTP {keyed.status_code}: {error.message}). Copy the "
                "key again from the Model Studio console's API keys page into the API key field."
            )
        if isinstance(error, AccountError):
            return False, f"{base_url} accepted no work for this key (HTTP {error.status_code}: {error.message})."
    return False, (
        f"{base_url} does not answer like Alibaba Cloud Model Studio (DashScope): GET {status_url} gave "
        f"{_shown(keyed)}. Check the Base URL (e.g. https://dashscope-intl.aliyuncs.com) and the connection's "
        "dialect (extra 'dialect')."
    )

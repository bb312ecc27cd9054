"""Reading the API's answers, and mapping every failure (an HTTP status, a transport error) to the error tree."""

from __future__ import annotations

import email.utils
import json
import math
import re
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from airflow_provider_happyhorse.constants import DEFAULT_MAX_ANSWER_BYTES, JOB_ID_PATTERN
from airflow_provider_happyhorse.core.requests import MAX_ANSWER_BYTES
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
    TransportError,
)
from airflow_provider_happyhorse.models import JobStatus, classify_status

# The response extension that says why an answer's body could not be read (over its limit, undecodable).
UNREADABLE = "happyhorse.unreadable"
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def answer_limit(request: httpx.Request) -> int:
    """How many bytes of the answer to ``request`` may be read (raw, and again once decoded)."""
    return int(request.extensions.get(MAX_ANSWER_BYTES, DEFAULT_MAX_ANSWER_BYTES))


def decode_within(raw: bytes, content_encoding: str | None, limit: int) -> tuple[bytes, str | None]:
    """
    The body ``raw`` stands for, decoded by its Content-Encoding without ever holding more than ``limit``
    bytes: (body, None), or (b"", why it cannot be read). ``raw`` is at most ``limit + 1`` bytes.
    """
    if len(raw) > limit:
        return b"", f"is over the {limit:,}-byte limit for an API answer"
    codings = [part.strip().lower() for part in (content_encoding or "").split(",")]
    body = raw
    for coding in reversed([part for part in codings if part not in ("", "identity")]):
        if coding not in ("gzip", "x-gzip", "deflate"):
            return b"", f"is encoded as {coding!r}, which was not asked for"
        # gzip, or zlib-wrapped deflate (32 + window: zlib or gzip header, detected)
        decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)
        try:
            body = decoder.decompress(body, limit + 1)
        except zlib.error:
            return b"", f"does not decode as {coding}"
        if len(body) > limit or decoder.unconsumed_tail:
            return b"", f"inflates past the {limit:,}-byte limit for an API answer ({coding})"
    return body, None


def undecoded(response: httpx.Response, chunk_size: int | None = None) -> tuple[Iterator[bytes], str | None]:
    """
    A streamed answer's body as it was sent (never decoded here, so never inflated) and its
    Content-Encoding. An answer a transport handed back already read comes as its (decoded) content, with
    None for the encoding.
    """
    if response.is_stream_consumed:
        return iter((response.content,)), None
    return response.iter_raw(chunk_size), response.headers.get("content-encoding")


def bounded_answer(
    request: httpx.Request, status_code: int, headers: httpx.Headers, raw: bytes, content_encoding: str | None
) -> httpx.Response:
    """
    An answer as the flows read it: its body decoded within the request's limit (``answer_limit``). An
    answer that cannot be read keeps its status and headers, has an empty body and says why in its
    ``UNREADABLE`` extension, which the parsers treat as a malformed answer.
    """
    body, problem = decode_within(raw, content_encoding, answer_limit(request))
    kept = [(name, value) for name, value in headers.multi_items() if name.lower() not in _DROPPED_HEADERS]
    return httpx.Response(
        status_code,
        headers=kept,
        content=body,
        request=request,
        extensions={} if problem is None else {UNREADABLE: problem},
    )


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
        when = when.replace(tzinfo=UTC)
    # A date in the past means "now".
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


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


def json_body(response: httpx.Response) -> Any:
    """The parsed JSON body, or None when the body is not JSON (or could not be read)."""
    if UNREADABLE in response.extensions:
        return None
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _read_envelope(response: httpx.Response, *, now: datetime | None = None) -> tuple[dict[str, Any], Any]:
    """The ``data`` object of a successful answer and the whole body, or the typed error the answer stands for."""
    body = json_body(response)
    if response.status_code >= 400:
        raise error_for_status(response.status_code, body, response, now=now)
    if (problem := response.extensions.get(UNREADABLE)) is not None:
        raise MalformedResponseError(f"the answer {problem}", status_code=response.status_code)
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
    if not is_job_id(job_id):
        raise MalformedResponseError(f"'data.task_id' is not a job id ({_clipped(job_id)})", status_code=200)
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


def is_job_id(text: str) -> bool:
    """Whether ``text`` may be used as a job id: in file names, logs and URLs (``JOB_ID_PATTERN``)."""
    return re.fullmatch(JOB_ID_PATTERN, text) is not None


def _clipped(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else f"{shown[:57]}... ({len(text)} characters)"


def parse_job_response(response: httpx.Response, *, now: datetime | None = None) -> JobStatus:
    data, body = _read_envelope(response, now=now)
    message = body.get("message")
    return parse_job(data, top_level_message=message if isinstance(message, str) else None)


def parse_submit_response(response: httpx.Response) -> JobStatus:
    data, _ = _read_envelope(response)
    if not isinstance(data.get("task_id"), str) or not data["task_id"]:
        raise MalformedResponseError("submission answer has no task_id", status_code=response.status_code)
    return parse_job({"status": "IN_PROGRESS", **data})


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


def redact(error: HappyHorseError, secret: str) -> None:
    """Scrub the key from an error's text, in case a server or proxy echoed it back."""
    if not secret or secret not in str(error):
        return
    error.args = tuple(str(arg).replace(secret, "***") for arg in error.args)
    if isinstance(error, APIStatusError):
        error.message = error.message.replace(secret, "***")

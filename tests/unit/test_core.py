"""The I/O-free core: requests, parsing, the error tree, the retry table and schedules, as data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_happyhorse import core
from airflow_provider_happyhorse.core.flows import Send, Sleep, status_flow, submit_flow
from airflow_provider_happyhorse.core.requests import build_status_request, build_submit_request, normalize_base_url
from airflow_provider_happyhorse.core.responses import (
    map_transport_error,
    parse_job_response,
    parse_retry_after,
    parse_submit_response,
    request_surely_not_sent,
)
from airflow_provider_happyhorse.core.retries import (
    RetryPolicy,
    is_retryable_poll_error,
    is_retryable_submit_error,
    submission_error,
)
from airflow_provider_happyhorse.core.schedule import PollSchedule, expected_render_seconds, first_poll_for
from airflow_provider_happyhorse.core.settings import ConnectionSettings
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
from airflow_provider_happyhorse.models import JobState, JobStatus, VideoRequest
from support.service import API_KEY, BASE_URL, JOB_ID, envelope, job_data, succeeded_data

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
VIDEO = "https://cdn.hh.test/v/clip.mp4"
REQUEST = VideoRequest.parse({"prompt": "a horse"})


def status_response(status_code: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response as a transport would give it, attached to a status request that carries the key."""
    request = build_status_request(BASE_URL, API_KEY, JOB_ID)
    if isinstance(body, (bytes, str)):
        return httpx.Response(status_code, content=body, headers=headers, request=request)
    return httpx.Response(status_code, json=body, headers=headers, request=request)


# ---------------------------------------------------------------------------------------------------
# Requests


def test_submit_request_is_a_bearer_post_of_the_exact_body() -> None:
    request = build_submit_request(BASE_URL, API_KEY, REQUEST)
    assert request.method == "POST"
    assert str(request.url) == "http://hh.test/prefix/api/generate"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert json.loads(request.content) == REQUEST.to_body()


@pytest.mark.parametrize(
    ("job_id", "query"),
    [
        (JOB_ID, f"task_id={JOB_ID}"),
        # httpx 0.27 writes the space as %20, 0.28 as +: both mean a space in a query.
        ("a b/c?d&e=f", "task_id=a{space}b%2Fc%3Fd%26e%3Df"),
    ],
)
def test_status_request_is_a_bearer_get_with_the_task_id(job_id: str, query: str) -> None:
    request = build_status_request(BASE_URL, API_KEY, job_id)
    assert request.method == "GET"
    assert str(request.url) in {f"http://hh.test/prefix/api/status?{query}".format(space=s) for s in ("+", "%20")}
    assert request.url.params["task_id"] == job_id
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.content == b""


# ---------------------------------------------------------------------------------------------------
# Status answers: every status and error-field variant

STATUS_BODIES: list[tuple[str, dict[str, Any], JobState, str | None, str | None]] = [
    ("SUCCESS with resultUrls", envelope(succeeded_data(url=VIDEO)), JobState.SUCCEEDED, VIDEO, None),
    (
        "COMPLETED with resultUrls",
        envelope({"task_id": JOB_ID, "status": "COMPLETED", "response": {"resultUrls": [VIDEO, "https://x/2.mp4"]}}),
        JobState.SUCCEEDED,
        VIDEO,
        None,
    ),
    (
        "success in lower case",
        envelope({"task_id": JOB_ID, "status": "success", "response": {"resultUrls": [VIDEO]}}),
        JobState.SUCCEEDED,
        VIDEO,
        None,
    ),
    (
        "FAILED with data.error_message",
        envelope(job_data("FAILED", error_message="nsfw")),
        JobState.FAILED,
        None,
        "nsfw",
    ),
    ("FAILURE with data.error", envelope(job_data("FAILURE", error="gpu lost")), JobState.FAILED, None, "gpu lost"),
    (
        "CANCELLED with data.fail_reason",
        envelope(job_data("CANCELLED", fail_reason="cancelled by admin")),
        JobState.FAILED,
        None,
        "cancelled by admin",
    ),
    (
        "FAILED with only a top-level message",
        envelope(job_data("FAILED"), message="prompt rejected by moderation"),
        JobState.FAILED,
        None,
        "prompt rejected by moderation",
    ),
    ("FAILED with no reason anywhere", envelope(job_data("FAILED")), JobState.FAILED, None, None),
    (
        "data.error_message wins over the top-level message",
        envelope(job_data("FAILED", error_message="specific"), message="generic"),
        JobState.FAILED,
        None,
        "specific",
    ),
    ("IN_PROGRESS with response null", envelope(job_data("IN_PROGRESS")), JobState.PENDING, None, None),
    ("NOT_START", envelope(job_data("NOT_START")), JobState.PENDING, None, None),
    ("QUEUED", envelope(job_data("QUEUED")), JobState.PENDING, None, None),
    ("PENDING", envelope(job_data("PENDING")), JobState.PENDING, None, None),
    ("unknown status", envelope(job_data("WARMING_UP")), JobState.PENDING, None, None),
    (
        "pending with a top-level message is not an error",
        envelope(job_data("IN_PROGRESS"), message="rendering"),
        JobState.PENDING,
        None,
        None,
    ),
    ("body code as a string", {"code": "200", "data": job_data("QUEUED")}, JobState.PENDING, None, None),
    ("no body code at all", {"data": job_data("QUEUED")}, JobState.PENDING, None, None),
]


@pytest.mark.parametrize(
    ("body", "state", "video_url", "error_message"),
    [row[1:] for row in STATUS_BODIES],
    ids=[row[0] for row in STATUS_BODIES],
)
def test_parse_status_variants(
    body: dict[str, Any], state: JobState, video_url: str | None, error_message: str | None
) -> None:
    job = parse_job_response(status_response(200, body))
    assert job == JobStatus(
        job_id=JOB_ID,
        status=body["data"]["status"],
        state=state,
        video_url=video_url,
        error_message=error_message,
    )


def test_submit_answer_is_a_pending_job_even_without_a_status() -> None:
    response = httpx.Response(200, json=envelope({"task_id": JOB_ID}))
    assert parse_submit_response(response) == JobStatus(job_id=JOB_ID, status="IN_PROGRESS", state=JobState.PENDING)


def test_submit_answer_keeps_the_status_it_is_given() -> None:
    response = httpx.Response(200, json=envelope({"task_id": JOB_ID, "status": "QUEUED"}))
    assert parse_submit_response(response).status == "QUEUED"


# ---------------------------------------------------------------------------------------------------
# Error statuses: class, status code, server message, error code, request id

ERRORS: list[tuple[str, int, Any, dict[str, str], type[APIStatusError], str, str | None, str | None]] = [
    # (id, status, body, headers, class, message, error code, request id)
    (
        "400 code shape",
        400,
        {"code": 400, "message": "prompt too long"},
        {},
        InvalidRequestError,
        "prompt too long",
        None,
        None,
    ),
    (
        "422 error shape",
        422,
        {"error": {"code": "invalid_duration", "message": "duration must be 3-15"}},
        {"x-request-id": "req-422"},
        InvalidRequestError,
        "duration must be 3-15",
        "invalid_duration",
        "req-422",
    ),
    ("401", 401, {"code": 401, "message": "invalid api key"}, {}, AuthenticationError, "invalid api key", None, None),
    (
        "402",
        402,
        {"code": 402, "message": "insufficient credits"},
        {},
        AccountError,
        "insufficient credits",
        None,
        None,
    ),
    (
        "403 error shape",
        403,
        {"error": {"code": "workflow_not_enabled", "message": "video is not enabled for this account"}},
        {"request-id": "req-403"},
        AccountError,
        "video is not enabled for this account",
        "workflow_not_enabled",
        "req-403",
    ),
    ("404", 404, {"code": 404, "message": "task not found"}, {}, NotFoundError, "task not found", None, None),
    (
        "429",
        429,
        {"code": 429, "message": "slow down"},
        {"x-trace-id": "tr-429"},
        RateLimitError,
        "slow down",
        None,
        "tr-429",
    ),
    ("500", 500, {"code": 500, "message": "internal"}, {}, ServerError, "internal", None, None),
    ("502 with an HTML body", 502, "<html>bad gateway</html>", {}, ServerError, "Bad Gateway", None, None),
    ("503", 503, {"code": 503, "message": "overloaded"}, {}, ServerError, "overloaded", None, None),
    ("504 with an empty body", 504, b"", {}, ServerError, "Gateway Timeout", None, None),
    ("error as a plain string", 400, {"error": "bad image url"}, {}, InvalidRequestError, "bad image url", None, None),
    (
        "error object without a message",
        403,
        {"error": {"code": "forbidden"}},
        {},
        AccountError,
        "Forbidden",
        "forbidden",
        None,
    ),
    (
        "request id in the body",
        500,
        {"code": 500, "message": "boom", "request_id": "body-id"},
        {},
        ServerError,
        "boom",
        None,
        "body-id",
    ),
    ("undocumented 418", 418, {"code": 418, "message": "teapot"}, {}, APIStatusError, "teapot", None, None),
]


@pytest.mark.parametrize(
    ("status_code", "body", "headers", "error_class", "message", "error_code", "request_id"),
    [row[1:] for row in ERRORS],
    ids=[row[0] for row in ERRORS],
)
def test_error_statuses_map_to_the_error_tree(
    status_code: int,
    body: Any,
    headers: dict[str, str],
    error_class: type[APIStatusError],
    message: str,
    error_code: str | None,
    request_id: str | None,
) -> None:
    with pytest.raises(APIStatusError) as caught:
        parse_job_response(status_response(status_code, body, headers))
    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status_code
    assert error.message == message
    assert error.error_code == error_code
    assert error.request_id == request_id
    text = str(error)
    assert f"HTTP {status_code}" in text
    assert message in text
    if request_id:
        assert request_id in text
    assert API_KEY not in text
    assert API_KEY not in repr(error)
    assert API_KEY not in repr(vars(error))


@pytest.mark.parametrize(
    ("body", "error_class", "status_code"),
    [
        ({"code": 402, "message": "insufficient credits", "data": None}, AccountError, 402),
        ({"code": "401", "message": "bad key"}, AuthenticationError, 401),
        ({"code": 429, "message": "too many"}, RateLimitError, 429),
        ({"code": 400, "message": "bad prompt"}, InvalidRequestError, 400),
        ({"code": 500, "message": "oops"}, ServerError, 500),
        ({"code": "not-a-number", "message": "weird"}, ServerError, 500),
        ({"code": 404, "message": "task not found"}, NotFoundError, 404),
    ],
)
def test_a_200_whose_body_code_is_an_error_is_an_error(
    body: dict[str, Any], error_class: type[APIStatusError], status_code: int
) -> None:
    with pytest.raises(error_class) as caught:
        parse_job_response(status_response(200, body))
    assert caught.value.status_code == status_code
    assert caught.value.message == body["message"]


def test_rate_limit_and_server_errors_carry_retry_after() -> None:
    with pytest.raises(RateLimitError) as limited:
        parse_job_response(status_response(429, {"code": 429, "message": "x"}, {"Retry-After": "17"}))
    assert limited.value.retry_after == 17.0
    with pytest.raises(ServerError) as busy:
        parse_job_response(status_response(503, {"code": 503, "message": "x"}, {"Retry-After": "4"}))
    assert busy.value.retry_after == 4.0
    with pytest.raises(ServerError) as plain:
        parse_job_response(status_response(503, {"code": 503, "message": "x"}))
    assert plain.value.retry_after is None


MALFORMED: list[tuple[str, Any]] = [
    ("not JSON", "<html>hello</html>"),
    ("empty", b""),
    ("invalid UTF-8", b"\xff\xfe\xfa{"),
    ("a JSON list", [envelope(job_data())]),
    ("a JSON string", '"success"'),
    ("no data", {"code": 200, "message": "success"}),
    ("data null", {"code": 200, "message": "success", "data": None}),
    ("data a list", {"code": 200, "message": "success", "data": [job_data()]}),
    ("no task_id", envelope({"status": "IN_PROGRESS"})),
    ("empty task_id", envelope({"task_id": "", "status": "IN_PROGRESS"})),
    ("numeric task_id", envelope({"task_id": 12, "status": "IN_PROGRESS"})),
    ("no status", envelope({"task_id": JOB_ID})),
    ("status not a string", envelope({"task_id": JOB_ID, "status": 3})),
    ("success without response", envelope(job_data("SUCCESS"))),
    (
        "success with empty resultUrls",
        envelope({"task_id": JOB_ID, "status": "SUCCESS", "response": {"resultUrls": []}}),
    ),
    (
        "success with a non-string url",
        envelope({"task_id": JOB_ID, "status": "SUCCESS", "response": {"resultUrls": [1]}}),
    ),
]


@pytest.mark.parametrize("body", [row[1] for row in MALFORMED], ids=[row[0] for row in MALFORMED])
def test_malformed_success_bodies(body: Any) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_job_response(status_response(200, body))
    assert caught.value.status_code == 200
    assert str(caught.value).startswith("MalformedResponseError (HTTP 200): ")


@pytest.mark.parametrize(
    "body",
    [envelope({"status": "IN_PROGRESS"}), envelope({"task_id": ""}), {"code": 200}, "not json"],
)
def test_malformed_submit_answers(body: Any) -> None:
    response = httpx.Response(200, json=body) if not isinstance(body, str) else httpx.Response(200, content=body)
    with pytest.raises(MalformedResponseError):
        parse_submit_response(response)


# ---------------------------------------------------------------------------------------------------
# The retry table (polls retry anything transient; submission follows the contract's rule)


def server_error(status: int, retry_after: float | None = None) -> ServerError:
    return ServerError("x", status_code=status, retry_after=retry_after)


RETRY_TABLE: list[tuple[str, HappyHorseError, bool, bool, type[HappyHorseError]]] = [
    # (id, error, poll retried, submission retried, what a failed submission raises)
    ("429", RateLimitError("x"), True, True, RateLimitError),
    ("429 with Retry-After", RateLimitError("x", retry_after=3.0), True, True, RateLimitError),
    ("503 with Retry-After", server_error(503, 5.0), True, True, ServerError),
    ("503 with Retry-After 0", server_error(503, 0.0), True, True, ServerError),
    ("503 without Retry-After", server_error(503), True, False, SubmissionOutcomeUnknownError),
    ("500", server_error(500), True, False, SubmissionOutcomeUnknownError),
    ("500 with Retry-After", server_error(500, 5.0), True, False, SubmissionOutcomeUnknownError),
    ("502", server_error(502), True, False, SubmissionOutcomeUnknownError),
    ("504", server_error(504), True, False, SubmissionOutcomeUnknownError),
    ("connect error (not sent)", TransportError("x", request_sent=False), True, True, TransportError),
    ("connect timeout (not sent)", RequestTimeoutError("x", request_sent=False), True, True, RequestTimeoutError),
    ("read timeout (sent)", RequestTimeoutError("x", request_sent=True), True, False, SubmissionOutcomeUnknownError),
    ("dropped connection (sent)", TransportError("x", request_sent=True), True, False, SubmissionOutcomeUnknownError),
    ("malformed 200", MalformedResponseError("x", status_code=200), True, False, SubmissionOutcomeUnknownError),
    ("400", InvalidRequestError("x", status_code=400), False, False, InvalidRequestError),
    ("422", InvalidRequestError("x", status_code=422), False, False, InvalidRequestError),
    ("401", AuthenticationError("x", status_code=401), False, False, AuthenticationError),
    ("402", AccountError("x", status_code=402), False, False, AccountError),
    ("403", AccountError("x", status_code=403), False, False, AccountError),
    ("404", NotFoundError("x", status_code=404), False, False, NotFoundError),
]


@pytest.mark.parametrize(
    ("error", "poll_retried", "submit_retried", "raised"),
    [row[1:] for row in RETRY_TABLE],
    ids=[row[0] for row in RETRY_TABLE],
)
def test_retry_table(
    error: HappyHorseError, poll_retried: bool, submit_retried: bool, raised: type[HappyHorseError]
) -> None:
    assert is_retryable_poll_error(error) is poll_retried
    assert is_retryable_submit_error(error) is submit_retried
    result = submission_error(error)
    assert type(result) is raised
    if raised is SubmissionOutcomeUnknownError:
        assert isinstance(result, SubmissionOutcomeUnknownError)
        assert result.cause is error
        assert "Look for it in the HappyHorse dashboard before submitting again" in str(result)
    else:
        assert result is error


# ---------------------------------------------------------------------------------------------------
# The flows, driven by hand: what they send, how long they wait, what they return or raise

Outcome = httpx.Response | httpx.TransportError


def drive(flow: Any, outcomes: list[Outcome]) -> tuple[list[Send | Sleep], Any]:
    """Run a flow, answering each Send with the next outcome; returns (actions, result or exception)."""
    actions: list[Send | Sleep] = []
    answers: Iterator[Outcome] = iter(outcomes)
    sent: Any = None
    try:
        while True:
            action = flow.send(sent)
            actions.append(action)
            sent = next(answers, None) if isinstance(action, Send) else None
            assert sent is not None or isinstance(action, Sleep), "the flow sent more requests than scripted"
    except StopIteration as stop:
        return actions, stop.value
    except HappyHorseError as error:
        return actions, error


def answer(status_code: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status_code, json=body, headers=headers)


def ok(status: str = "IN_PROGRESS") -> httpx.Response:
    return answer(200, envelope(job_data(status)))


def transport_error(exc_type: type[httpx.TransportError]) -> httpx.TransportError:
    return exc_type("scripted", request=httpx.Request("GET", "http://hh.test"))


POLICY = RetryPolicy(max_retries=3, submit_max_retries=2, initial_delay=1.0, max_delay=30.0)
SETTINGS = ConnectionSettings(base_url=BASE_URL, api_key=API_KEY, policy=POLICY)


def half() -> float:
    return 0.5


@pytest.mark.parametrize(
    ("outcomes", "sends", "sleeps", "result"),
    [
        ([ok()], 1, [], JobState.PENDING),
        (
            [answer(500), answer(502), ok("SUCCESS"), answer(200, envelope(succeeded_data()))],
            4,
            [0.5, 1.0, 2.0],
            JobState.SUCCEEDED,
        ),
        ([answer(429, headers={"Retry-After": "9"}), ok()], 2, [9.0], JobState.PENDING),
        (
            [transport_error(httpx.ReadTimeout), transport_error(httpx.ConnectError), ok()],
            3,
            [0.5, 1.0],
            JobState.PENDING,
        ),
        ([answer(200, {"code": 200}), ok("QUEUED")], 2, [0.5], JobState.PENDING),
        ([answer(503)] * 4, 4, [0.5, 1.0, 2.0], ServerError),
        ([answer(401, {"code": 401, "message": "no"})], 1, [], AuthenticationError),
        ([answer(404)], 1, [], NotFoundError),
    ],
    ids=["ok", "5xx then malformed success", "429 Retry-After", "transport", "malformed", "exhausted", "401", "404"],
)
def test_status_flow(outcomes: list[Outcome], sends: int, sleeps: list[float], result: Any) -> None:
    actions, outcome = drive(status_flow(SETTINGS, JOB_ID, rng=half), outcomes)
    assert sum(isinstance(action, Send) for action in actions) == sends
    assert [action.seconds for action in actions if isinstance(action, Sleep)] == sleeps
    if isinstance(result, JobState):
        assert isinstance(outcome, JobStatus)
        assert outcome.state is result
    else:
        assert type(outcome) is result


def test_status_flow_max_retries_override() -> None:
    actions, outcome = drive(status_flow(SETTINGS, JOB_ID, max_retries=0, rng=half), [answer(503)])
    assert [type(action) for action in actions] == [Send]
    assert isinstance(outcome, ServerError)


def test_flows_report_each_retry() -> None:
    seen: list[tuple[str, int, float]] = []
    flow = status_flow(
        SETTINGS,
        JOB_ID,
        rng=half,
        on_retry=lambda e, n, d: seen.append((type(e).__name__, n, d)),
    )
    drive(flow, [answer(500), answer(429, headers={"Retry-After": "3"}), ok()])
    assert seen == [("ServerError", 1, 0.5), ("RateLimitError", 2, 3.0)]


@pytest.mark.parametrize(
    ("outcomes", "sends", "sleeps", "result"),
    [
        ([answer(200, envelope({"task_id": JOB_ID, "status": "IN_PROGRESS"}))], 1, [], JobStatus),
        ([transport_error(httpx.ConnectError), ok()], 2, [0.5], JobStatus),
        ([transport_error(httpx.ConnectTimeout), ok()], 2, [0.5], JobStatus),
        ([transport_error(httpx.PoolTimeout), ok()], 2, [0.5], JobStatus),
        ([answer(429), answer(429, headers={"Retry-After": "6"}), ok()], 3, [0.5, 6.0], JobStatus),
        ([answer(503, headers={"Retry-After": "2"}), ok()], 2, [2.0], JobStatus),
        ([answer(429)] * 3, 3, [0.5, 1.0], RateLimitError),
        ([transport_error(httpx.ConnectError)] * 3, 3, [0.5, 1.0], TransportError),
        ([transport_error(httpx.ReadTimeout)], 1, [], SubmissionOutcomeUnknownError),
        ([transport_error(httpx.WriteTimeout)], 1, [], SubmissionOutcomeUnknownError),
        ([transport_error(httpx.RemoteProtocolError)], 1, [], SubmissionOutcomeUnknownError),
        ([transport_error(httpx.ReadError)], 1, [], SubmissionOutcomeUnknownError),
        ([answer(500)], 1, [], SubmissionOutcomeUnknownError),
        ([answer(502)], 1, [], SubmissionOutcomeUnknownError),
        ([answer(503)], 1, [], SubmissionOutcomeUnknownError),
        ([answer(504)], 1, [], SubmissionOutcomeUnknownError),
        ([answer(200, {"code": 200, "message": "success"})], 1, [], SubmissionOutcomeUnknownError),
        ([answer(200, {"code": 500, "message": "internal"})], 1, [], SubmissionOutcomeUnknownError),
        ([answer(400, {"code": 400, "message": "bad"})], 1, [], InvalidRequestError),
        ([answer(401)], 1, [], AuthenticationError),
        ([answer(402)], 1, [], AccountError),
        ([answer(403)], 1, [], AccountError),
    ],
    ids=[
        "ok",
        "connect error",
        "connect timeout",
        "pool timeout",
        "429 twice",
        "503 with Retry-After",
        "429 exhausted",
        "connect error exhausted",
        "read timeout",
        "write timeout",
        "remote protocol error",
        "read error",
        "500",
        "502",
        "503 without Retry-After",
        "504",
        "malformed 200",
        "200 with body code 500",
        "400",
        "401",
        "402",
        "403",
    ],
)
def test_submit_flow(outcomes: list[Outcome], sends: int, sleeps: list[float], result: type[Any]) -> None:
    actions, outcome = drive(submit_flow(SETTINGS, REQUEST, rng=half), outcomes)
    assert sum(isinstance(action, Send) for action in actions) == sends
    assert [action.seconds for action in actions if isinstance(action, Sleep)] == sleeps
    assert type(outcome) is result
    if isinstance(outcome, SubmissionOutcomeUnknownError):
        # No chained httpx exception (it holds the request, and so the key).
        assert outcome.__cause__ is None
        assert outcome.__suppress_context__


def test_a_flow_refuses_to_be_fed_nonsense() -> None:
    flow = status_flow(SETTINGS, JOB_ID)
    next(flow)
    with pytest.raises(TypeError, match="response or a transport error"):
        flow.send(None)


# ---------------------------------------------------------------------------------------------------
# Backoff


@pytest.mark.parametrize(
    ("retry", "ceiling"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0), (50, 30.0)],
)
def test_backoff_grows_exponentially_up_to_the_cap(retry: int, ceiling: float) -> None:
    policy = RetryPolicy()
    assert policy.backoff(retry, None, lambda: 1.0) == ceiling
    assert policy.backoff(retry, None, lambda: 0.0) == 0.0
    assert policy.backoff(retry, None, lambda: 0.25) == ceiling * 0.25


@pytest.mark.parametrize("draw", [0.0, 0.01, 0.3, 0.5, 0.77, 0.999999])
@pytest.mark.parametrize("retry", [1, 2, 3, 8])
def test_backoff_is_full_jitter_within_the_cap(draw: float, retry: int) -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=3.0)
    ceiling = min(3.0, 0.5 * 2 ** (retry - 1))
    delay = policy.backoff(retry, None, lambda: draw)
    assert delay == pytest.approx(ceiling * draw)
    assert 0.0 <= delay <= 3.0


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [(12.0, 300.0, 12.0), (0.0, 300.0, 0.0), (300.0, 300.0, 300.0), (301.0, 300.0, 300.0), (86400.0, 60.0, 60.0)],
)
def test_backoff_honours_retry_after_capped(retry_after: float, cap: float, expected: float) -> None:
    policy = RetryPolicy(max_retry_after=cap)

    def no_draw() -> float:
        raise AssertionError("Retry-After needs no jitter")

    assert policy.backoff(1, retry_after, no_draw) == expected
    assert policy.backoff(9, retry_after, no_draw) == expected


def test_default_policy_constants() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.submit_max_retries) == (4, 3)
    assert (policy.initial_delay, policy.max_delay, policy.max_retry_after) == (1.0, 30.0, 300.0)


# ---------------------------------------------------------------------------------------------------
# Retry-After, both forms, against a fixed now


def http_date(offset_seconds: float) -> str:
    return format_datetime(NOW + timedelta(seconds=offset_seconds), usegmt=True)


RETRY_AFTER: list[tuple[str, str | None, float | None]] = [
    ("integer seconds", "120", 120.0),
    ("one second", "1", 1.0),
    ("zero", "0", 0.0),
    ("float seconds", "1.5", 1.5),
    ("surrounding whitespace", "  30 \t", 30.0),
    ("negative", "-5", None),
    ("negative float", "-0.5", None),
    ("nan", "nan", None),
    ("infinity", "inf", None),
    ("HTTP date in the future", http_date(90), 90.0),
    ("HTTP date in the past", http_date(-3600), 0.0),
    ("HTTP date now", http_date(0), 0.0),
    ("RFC 850 date", "Thursday, 01-Jan-26 12:00:45 GMT", 45.0),
    ("asctime date", "Thu Jan  1 12:01:00 2026", 60.0),
    ("date with an offset", "Thu, 01 Jan 2026 13:00:30 +0100", 30.0),
    ("impossible date", "Thu, 32 Jan 2026 12:00:00 GMT", None),
    ("seconds with a unit", "10s", None),
    ("hex", "0x10", None),
    ("words", "soon", None),
    ("empty", "", None),
    ("blank", "   ", None),
    ("absent", None, None),
]


@pytest.mark.parametrize(("value", "seconds"), [row[1:] for row in RETRY_AFTER], ids=[row[0] for row in RETRY_AFTER])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


# ---------------------------------------------------------------------------------------------------
# Base URLs


@pytest.mark.parametrize(
    ("host", "kwargs", "base_url"),
    [
        (None, {}, "https://happyhorse.app"),
        ("", {}, "https://happyhorse.app"),
        ("happyhorse.app", {}, "https://happyhorse.app"),
        ("proxy.example.com:8443", {}, "https://proxy.example.com:8443"),
        ("proxy.example.com", {"scheme": "http"}, "http://proxy.example.com"),
        ("http://hh.test/prefix", {}, "http://hh.test/prefix"),
        ("http://hh.test/prefix/", {}, "http://hh.test/prefix"),
        ("https://hh.test/a/b/", {}, "https://hh.test/a/b"),
        ("https://hh.test/", {}, "https://hh.test"),
        ("  https://hh.test  ", {}, "https://hh.test"),
        ("https://hh.test/p?x=1#frag", {}, "https://hh.test/p"),
        ("hh.test", {"path_prefix": "v1"}, "https://hh.test/v1"),
        ("hh.test", {"path_prefix": "/v1/"}, "https://hh.test/v1"),
        ("http://hh.test/reseller", {"path_prefix": "happyhorse"}, "http://hh.test/reseller/happyhorse"),
        ("http://127.0.0.1:8000", {}, "http://127.0.0.1:8000"),
        ("HTTPS://HH.test", {}, "https://HH.test"),
    ],
)
def test_normalize_base_url(host: str | None, kwargs: dict[str, Any], base_url: str) -> None:
    assert normalize_base_url(host, **kwargs) == base_url


@pytest.mark.parametrize("host", ["ftp://hh.test", "http://", "https:///only/a/path", "://hh.test", "file:///etc"])
def test_normalize_base_url_refuses_non_http_urls(host: str) -> None:
    with pytest.raises(ValueError, match="must be an http"):
        normalize_base_url(host)


def test_requests_keep_the_path_prefix() -> None:
    base = normalize_base_url("http://hh.test/prefix/")
    assert str(build_submit_request(base, API_KEY, REQUEST).url) == "http://hh.test/prefix/api/generate"
    assert str(build_status_request(base, API_KEY, "j").url) == "http://hh.test/prefix/api/status?task_id=j"


# ---------------------------------------------------------------------------------------------------
# Transport errors: did the request leave?


def httpx_error(exc_type: type[httpx.TransportError]) -> httpx.TransportError:
    return exc_type("scripted", request=httpx.Request("POST", "http://hh.test/api/generate"))


@pytest.mark.parametrize(
    ("exc_type", "not_sent", "mapped"),
    [
        (httpx.ConnectError, True, TransportError),
        (httpx.ConnectTimeout, True, RequestTimeoutError),
        (httpx.PoolTimeout, True, RequestTimeoutError),
        (httpx.ReadTimeout, False, RequestTimeoutError),
        (httpx.WriteTimeout, False, RequestTimeoutError),
        (httpx.ReadError, False, TransportError),
        (httpx.WriteError, False, TransportError),
        (httpx.RemoteProtocolError, False, TransportError),
        (httpx.LocalProtocolError, False, TransportError),
        (httpx.ProxyError, False, TransportError),
    ],
)
def test_httpx_transport_errors(
    exc_type: type[httpx.TransportError], not_sent: bool, mapped: type[TransportError]
) -> None:
    exc = httpx_error(exc_type)
    assert request_surely_not_sent(exc) is not_sent
    error = map_transport_error(exc)
    assert type(error) is mapped
    assert error.request_sent is not not_sent
    assert str(error) == f"{exc_type.__name__}: scripted"


def test_an_error_is_named_once_when_its_cause_has_the_same_name() -> None:
    request = httpx.Request("GET", "http://hh.test/api/status")
    outer = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    outer.__cause__ = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    assert str(map_transport_error(outer)) == "ConnectError: [Errno 111] Connection refused"


def test_requests_carry_their_timeout() -> None:
    # The async path sends through a transport with no client to add a timeout: the request has it.
    for request in (
        build_status_request(BASE_URL, API_KEY, JOB_ID, timeout=7.5),
        build_submit_request(BASE_URL, API_KEY, REQUEST, timeout=7.5),
    ):
        assert request.extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}


# ---------------------------------------------------------------------------------------------------
# Poll schedule

SCHEDULE = PollSchedule(first_poll_after=60.0, min_interval=10.0, max_interval=120.0, growth=0.1, jitter=0.1)


def no_jitter() -> float:
    return 0.5  # jitter only ever shortens a wait, by ``jitter x |2 rng() - 1|``


def test_first_poll_allows_for_the_earliest_likely_finish() -> None:
    # A job 10% faster than its expected 40 s is still seen within 2 s + 10% of its render time.
    first = first_poll_for(40.0)
    assert first == pytest.approx(36 * 1.1 + 2)
    assert first - 36 <= 2 + 0.1 * 36 + 1e-9


@pytest.mark.parametrize(
    ("elapsed", "polls_done", "remaining", "delay"),
    [
        (0.0, 0, 3600.0, 60.0),  # the first poll when it was asked for
        (20.0, 0, 3600.0, 40.0),  # ... counted from submission
        (100.0, 0, 3600.0, 0.0),  # already past it: poll now
        (0.0, 0, 30.0, 30.0),  # never past the deadline
        (60.0, 1, 3600.0, 10.0),  # 2 s + 10% of 60 s is 8 s: the floor
        (100.0, 1, 3600.0, 12.0),  # 2 s + 10% of the time spent
        (300.0, 2, 3600.0, 32.0),
        (900.0, 5, 3600.0, 92.0),
        (1200.0, 6, 3600.0, 120.0),
        (50000.0, 30, 99999.0, 120.0),  # the cap
        (900.0, 5, 7.0, 7.0),  # the deadline beats the floor
        (900.0, 5, 0.0, 0.0),
    ],
)
def test_poll_schedule_without_jitter(elapsed: float, polls_done: int, remaining: float, delay: float) -> None:
    assert SCHEDULE.next_delay(elapsed=elapsed, polls_done=polls_done, remaining=remaining, rng=no_jitter) == delay


def test_poll_schedule_never_shrinks_as_time_passes() -> None:
    delays = [SCHEDULE.next_delay(elapsed=t, polls_done=1, remaining=1e9, rng=no_jitter) for t in range(0, 3000, 25)]
    assert delays == sorted(delays)
    assert delays[0] == 10.0
    assert delays[-1] == 120.0


@pytest.mark.parametrize(
    ("elapsed", "polls_done", "low", "high"),
    [
        (0.0, 0, 54.0, 60.0),  # jitter only shortens: up to 10% earlier than 60 s
        (500.0, 3, 46.8, 52.0),  # up to 10% earlier than 2 s + 50 s
        (60.0, 1, 10.0, 10.0),  # at the floor: never below it
        (50000.0, 9, 108.0, 120.0),  # at the cap: never above it
    ],
)
def test_poll_schedule_jitter_bounds(elapsed: float, polls_done: int, low: float, high: float) -> None:
    highest = SCHEDULE.next_delay(elapsed=elapsed, polls_done=polls_done, remaining=1e9, rng=no_jitter)
    lowest = SCHEDULE.next_delay(elapsed=elapsed, polls_done=polls_done, remaining=1e9, rng=lambda: 0.0)
    assert SCHEDULE.next_delay(elapsed=elapsed, polls_done=polls_done, remaining=1e9, rng=lambda: 0.999999999) >= lowest
    assert lowest == pytest.approx(low)
    assert highest == pytest.approx(high)


@settings(max_examples=300, deadline=None)
@given(
    elapsed=st.floats(min_value=0, max_value=1e6),
    polls_done=st.integers(min_value=0, max_value=1000),
    remaining=st.floats(min_value=0, max_value=1e6),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
    first=st.floats(min_value=0, max_value=3600),
)
def test_poll_schedule_bounds_hold_for_any_input(
    elapsed: float, polls_done: int, remaining: float, draw: float, first: float
) -> None:
    schedule = PollSchedule(first_poll_after=first, min_interval=5.0, max_interval=60.0)
    delay = schedule.next_delay(elapsed=elapsed, polls_done=polls_done, remaining=remaining, rng=lambda: draw)
    assert 0.0 <= delay <= remaining
    if polls_done > 0:
        assert delay == min(remaining, delay)
        assert delay <= 60.0
        assert delay >= min(5.0, remaining)
    else:
        assert delay <= max(first - elapsed, 0.0) * 1.1 + 1e-9


@settings(max_examples=300, deadline=None)
@given(
    elapsed=st.floats(min_value=0, max_value=1e5),
    polls_done=st.integers(min_value=0, max_value=100),
    remaining=st.floats(min_value=0, max_value=1e5),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
    now=st.floats(min_value=1.7e9, max_value=1.8e9),
)
def test_a_wait_ends_on_a_tick_and_is_never_longer(
    elapsed: float, polls_done: int, remaining: float, draw: float, now: float
) -> None:
    schedule = PollSchedule(first_poll_after=60.0, min_interval=5.0, max_interval=60.0)
    plain = schedule.next_delay(elapsed=elapsed, polls_done=polls_done, remaining=remaining, rng=lambda: draw)
    on_tick = schedule.next_delay(
        elapsed=elapsed, polls_done=polls_done, remaining=remaining, rng=lambda: draw, now=now
    )
    assert 0.0 <= on_tick <= plain + 1e-6  # never later, so never past the deadline or the detection target
    if polls_done > 0:
        assert on_tick >= min(5.0, remaining) - 1e-6  # the floor holds
    if on_tick < plain:
        assert plain - on_tick < 1.0 + 1e-6  # shortened by less than a tick...
        wake = now + on_tick
        assert min(wake % 1.0, 1.0 - wake % 1.0) < 1e-3 or on_tick == 0.0  # ...to end on one


@pytest.mark.parametrize(
    ("now", "polls_done", "delay"),
    [
        (1_700_000_000.0, 1, 8.0),  # already on a tick
        (1_700_000_000.4, 1, 7.6),  # 8.0 would end at .4: shortened to end on the second
        (1_700_000_000.4, 0, 59.6),  # the first poll too
        (1_700_000_000.9, 0, 59.1),
    ],
)
def test_waits_of_jobs_due_in_the_same_second_end_together(now: float, polls_done: int, delay: float) -> None:
    schedule = PollSchedule(first_poll_after=60.0, min_interval=2.0, max_interval=120.0)
    # 60 s after submission without jitter: 2 s + 10% x 60 s = 8 s, or the first poll at 60 s.
    elapsed = 60.0 if polls_done else 0.0
    assert schedule.next_delay(
        elapsed=elapsed, polls_done=polls_done, remaining=1e6, rng=lambda: 0.5, now=now
    ) == pytest.approx(delay)


def test_a_wait_at_the_floor_is_not_shortened_and_ticks_shrink_with_the_floor() -> None:
    at_floor = PollSchedule(first_poll_after=0.0, min_interval=5.0, max_interval=60.0)
    assert at_floor.next_delay(elapsed=0.0, polls_done=1, remaining=1e6, rng=lambda: 0.5, now=100.5) == 5.0
    fast = PollSchedule(first_poll_after=0.0, min_interval=0.1, max_interval=1.0, slack=0.3, growth=0.0)
    # A 0.1 s floor gives a 0.05 s tick: 0.3 s from 100.02 ends at 100.30, not at 100.32.
    assert fast.next_delay(elapsed=0.0, polls_done=1, remaining=1e6, rng=lambda: 0.5, now=100.02) == pytest.approx(0.28)


@pytest.mark.parametrize(
    ("mode", "duration", "sound", "seconds"),
    [
        # 20 s + 3 s per second of video, pro x1.5, audio x1.2: the emulator's default model too.
        ("std", 5, False, 35.0),
        ("std", 5, True, 42.0),
        ("pro", 5, False, 52.5),
        ("pro", 10, True, 90.0),
        ("std", 15, False, 65.0),
    ],
)
def test_expected_render_seconds(mode: str, duration: float, sound: bool, seconds: float) -> None:
    assert expected_render_seconds(mode, duration, sound) == pytest.approx(seconds)


def test_core_has_no_io_of_its_own() -> None:
    # The core builds and reads; only the hook sends. No clients, sockets, sleeps or Airflow hide in it.
    modules = sorted(Path(core.__file__).parent.glob("*.py"))
    assert {path.stem for path in modules} >= {"requests", "responses", "retries", "flows", "schedule", "wait"}
    for path in modules:
        source = path.read_text(encoding="utf-8")
        for forbidden in ("httpx.Client(", "httpx.AsyncClient(", "time.sleep", "asyncio", "socket.", "import airflow"):
            assert forbidden not in source, (path.name, forbidden)

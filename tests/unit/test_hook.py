"""
HappyHorseHook end to end over scripted transports (``httpx.MockTransport``) and, where the real
transports matter (pooling, httpcore's debug logs, unreachable hosts), a tiny server on 127.0.0.1.
Connections come from ``AIRFLOW_CONN_*``; sleeping is recorded, never done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import Connection

from airflow_provider_happyhorse.exceptions import (
    AccountError,
    AuthenticationError,
    ConfigurationError,
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
from airflow_provider_happyhorse.hooks.happyhorse import ConnectionSettings, HappyHorseHook, shared_async_transports
from airflow_provider_happyhorse.models import JobState, JobStatus, VideoRequest
from support.clock import FakeClock
from support.loopback import LoopbackServer, loopback_server_in_thread
from support.service import (
    API_KEY,
    JOB_ID,
    ConnectionSetter,
    FakeService,
    Reply,
    envelope,
    fail,
    job_data,
    ok_job,
    reply,
    resolve,
    scripted,
    succeeded_data,
)

REQUEST = VideoRequest.parse({"prompt": "a horse on a beach at dawn", "mode": "pro", "duration": 10})
SUBMITTED = reply(200, envelope({"task_id": JOB_ID, "status": "IN_PROGRESS"}))
# Airflow 3.3.2 brought a connection lookup that never blocks (with `Connection.aextra_dejson`); before it,
# common.compat's `get_async_connection` runs the blocking lookup in a worker thread instead.
HAS_NON_BLOCKING_CONNECTION_LOOKUP = hasattr(Connection, "aextra_dejson")


def half() -> float:
    return 0.5


def make_hook(script: FakeService | None = None, clock: FakeClock | None = None, **kwargs: Any) -> HappyHorseHook:
    """A hook on ``happyhorse_default`` whose sync and async transports are the script; time is ``clock``."""
    clock = clock or FakeClock()
    transport = script.transport() if script is not None else None
    return HappyHorseHook(
        transport=transport,
        resolve=resolve,
        async_transport=transport,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        rng=half,
        clock=clock,
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _no_leftover_shared_clients() -> Iterable[None]:
    yield
    assert shared_async_transports.open_transports() == 0, "a shared async transport was left open"


# ---------------------------------------------------------------------------------------------------
# The connection


def test_base_url_prefix_bearer_and_timeout_reach_the_server(connection: ConnectionSetter) -> None:
    script = scripted(SUBMITTED)
    hook = make_hook(script)
    hook.submit_job(REQUEST)
    hook.get_job(JOB_ID)
    post, get = script.requests
    assert (post.method, str(post.url)) == ("POST", "http://hh.test/prefix/api/generate")
    assert (get.method, str(get.url)) == ("GET", f"http://hh.test/prefix/api/status?task_id={JOB_ID}")
    for request in script.requests:
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.headers["user-agent"] == "airflow-provider-happyhorse"
        assert request.extensions["timeout"] == {"connect": 30.0, "read": 30.0, "write": 30.0, "pool": 30.0}


@pytest.mark.parametrize(
    ("definition", "base_url"),
    [
        ({"host": "http://hh.test/prefix"}, "http://hh.test/prefix"),
        ({"host": "http://hh.test/prefix/"}, "http://hh.test/prefix"),
        ({"host": "hh.test"}, "https://hh.test"),
        ({"host": None}, "https://happyhorse.app"),
        ({"host": "proxy.test:8080", "extra": {"scheme": "http"}}, "http://proxy.test:8080"),
        ({"uri": f"happyhorse://:{API_KEY}@proxy.test/reseller?scheme=http"}, "http://proxy.test/reseller"),
        ({"uri": f"happyhorse://:{API_KEY}@proxy.test"}, "https://proxy.test"),
    ],
)
def test_connection_forms_give_the_base_url(
    connection: ConnectionSetter, definition: dict[str, Any], base_url: str
) -> None:
    connection(**definition)
    script = scripted()
    hook = make_hook(script)
    assert hook.settings.base_url == base_url
    assert hook.settings.api_key == API_KEY
    hook.get_job(JOB_ID)
    assert str(script.requests[0].url) == f"{base_url}/api/status?task_id={JOB_ID}"


def test_a_connection_without_a_key_is_refused_before_sending(connection: ConnectionSetter) -> None:
    connection(password=None)
    script = scripted()
    with pytest.raises(ConfigurationError, match=r"connection 'happyhorse_default' has no API key\. Put the key"):
        make_hook(script).get_job(JOB_ID)
    assert script.requests == []


def test_a_missing_connection_is_named_with_the_way_out() -> None:
    with pytest.raises(ConfigurationError) as raised:
        HappyHorseHook("happyhorse_typo").get_job(JOB_ID)
    assert str(raised.value) == (
        "The HappyHorse connection 'happyhorse_typo' is not defined. Create it (Admin > Connections, type "
        "HappyHorse) or set AIRFLOW_CONN_HAPPYHORSE_TYPO, or fix happyhorse_conn_id; then clear the task."
    )


async def test_a_missing_connection_is_named_in_the_triggerer_too() -> None:
    with pytest.raises(ConfigurationError, match="'happyhorse_async_typo' is not defined"):
        await HappyHorseHook("happyhorse_async_typo").aget_settings()


def test_extras_change_limits_and_timeout(connection: ConnectionSetter) -> None:
    connection(
        extra={
            "timeout": 7.5,
            "max_retries": 1,
            "submit_max_retries": 0,
            "retry_initial_delay": 2,
            "retry_max_delay": 3,
            "max_retry_after": 5,
            "max_connections": 3,
        }
    )
    clock = FakeClock()
    polls = scripted(then=reply(500))
    with pytest.raises(ServerError):
        make_hook(polls, clock).get_job(JOB_ID)
    assert polls.status_calls == 2  # 1 retry
    assert clock.sleeps == [1.0]  # 2 s initial delay, half of it (rng 0.5)
    assert polls.requests[0].extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}

    clock = FakeClock()
    slow = scripted(reply(502), reply(502), then=ok_job())
    connection(extra={"max_retries": 4, "retry_initial_delay": 2, "retry_max_delay": 3})
    make_hook(slow, clock).get_job(JOB_ID)
    assert clock.sleeps == [1.0, 1.5]  # ceilings 2 then min(3, 4)

    clock = FakeClock()
    connection(extra={"max_retries": 1, "max_retry_after": 5})
    limited = scripted(reply(429, headers={"Retry-After": "100"}))
    make_hook(limited, clock).get_job(JOB_ID)
    assert clock.sleeps == [5.0]  # Retry-After capped by the extra

    clock = FakeClock()
    connection(extra={"submit_max_retries": 0})
    submits = scripted(then=reply(429))
    with pytest.raises(RateLimitError):
        make_hook(submits, clock).submit_job(REQUEST)
    assert submits.posts == 1
    assert clock.sleeps == []

    connection(extra={"max_connections": 3, "timeout": 2})
    settings = make_hook().settings
    assert (settings.max_connections, settings.timeout) == (3, 2.0)


# ---------------------------------------------------------------------------------------------------
# Submission: the paid call, and the contract's submission rule


def test_submit_happy_path(connection: ConnectionSetter) -> None:
    clock = FakeClock()
    script = scripted(SUBMITTED)
    job = make_hook(script, clock).submit_job(REQUEST)
    assert job == JobStatus(job_id=JOB_ID, status="IN_PROGRESS", state=JobState.PENDING)
    assert script.posts == 1
    assert json.loads(script.requests[0].content) == {
        "model": "happyhorse-1.0/video",
        "prompt": "a horse on a beach at dawn",
        "mode": "pro",
        "duration": 10,
        "aspect_ratio": "16:9",
        "sound": True,
        "cfg_scale": 0.5,
        "multi_shots": False,
    }
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "after_send",
    [
        fail(httpx.ReadTimeout),
        fail(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
        fail(httpx.WriteTimeout),
        fail(httpx.ReadError),
        fail(httpx.WriteError),
    ],
    ids=["read timeout", "dropped connection", "write timeout", "read error", "write error"],
)
def test_a_submission_that_may_have_arrived_is_sent_exactly_once(
    connection: ConnectionSetter, after_send: Reply
) -> None:
    clock = FakeClock()
    script = scripted(after_send, then=SUBMITTED)
    with pytest.raises(SubmissionOutcomeUnknownError) as caught:
        make_hook(script, clock).submit_job(REQUEST)
    assert script.posts == 1
    assert clock.sleeps == []
    assert isinstance(caught.value.cause, TransportError)
    assert caught.value.cause.request_sent is True
    assert "Look for it in the HappyHorse dashboard before submitting again" in str(caught.value)


@pytest.mark.parametrize(
    ("failures", "sleeps"),
    [
        ([fail(httpx.ConnectError), fail(httpx.ConnectError)], [0.5, 1.0]),
        ([fail(httpx.ConnectTimeout)], [0.5]),
        ([fail(httpx.PoolTimeout)], [0.5]),
        ([reply(429, {"code": 429, "message": "slow down"})], [0.5]),
        ([reply(429, headers={"Retry-After": "7"})], [7.0]),
        ([reply(503, headers={"Retry-After": "12"})], [12.0]),
        ([reply(503, headers={"Retry-After": "100000"})], [300.0]),
        (
            [
                reply(
                    429,
                    headers={"Retry-After": format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)},
                )
            ],
            [300.0],
        ),
        ([reply(200, {"code": 429, "message": "rate limited"})], [0.5]),
        (
            [
                fail(httpx.ConnectError),
                reply(429, headers={"Retry-After": "3"}),
                reply(503, headers={"Retry-After": "4"}),
            ],
            [0.5, 3.0, 4.0],
        ),
    ],
    ids=[
        "connect error twice",
        "connect timeout",
        "pool timeout",
        "429",
        "429 Retry-After seconds",
        "503 Retry-After",
        "503 Retry-After capped",
        "429 Retry-After date capped",
        "200 with body code 429",
        "mixed",
    ],
)
def test_submission_is_retried_only_when_no_task_can_exist(
    connection: ConnectionSetter, failures: list[Reply], sleeps: list[float]
) -> None:
    clock = FakeClock()
    script = scripted(*failures, then=SUBMITTED)
    job = make_hook(script, clock).submit_job(REQUEST)
    assert job.job_id == JOB_ID
    assert script.posts == len(failures) + 1
    assert clock.sleeps == sleeps


@pytest.mark.parametrize(
    ("forever", "error_class"),
    [
        (reply(429), RateLimitError),
        (fail(httpx.ConnectError), TransportError),
        (reply(503, headers={"Retry-After": "1"}), ServerError),
    ],
    ids=["429", "connect error", "503 Retry-After"],
)
def test_submission_retries_are_bounded(
    connection: ConnectionSetter, forever: Reply, error_class: type[Exception]
) -> None:
    clock = FakeClock()
    script = scripted(then=forever)
    with pytest.raises(error_class):
        make_hook(script, clock).submit_job(REQUEST)
    assert script.posts == 4  # 1 + 3 retries by default
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize(
    ("answer", "status_code"),
    [
        (reply(500, {"code": 500, "message": "internal"}), 500),
        (reply(502, "<html>bad gateway</html>"), 502),
        (reply(503, {"code": 503, "message": "busy"}), 503),
        (reply(504), 504),
        (reply(500, headers={"Retry-After": "5"}), 500),
        (reply(200, {"code": 500, "message": "internal"}), 500),
    ],
    ids=["500", "502", "503 without Retry-After", "504", "500 with Retry-After", "200 with body code 500"],
)
def test_server_errors_on_submission_are_outcome_unknown_not_retried(
    connection: ConnectionSetter, answer: Reply, status_code: int
) -> None:
    clock = FakeClock()
    script = scripted(answer, then=SUBMITTED)
    with pytest.raises(SubmissionOutcomeUnknownError) as caught:
        make_hook(script, clock).submit_job(REQUEST)
    assert script.posts == 1
    assert clock.sleeps == []
    assert isinstance(caught.value.cause, ServerError)
    assert caught.value.cause.status_code == status_code


@pytest.mark.parametrize(
    "answer",
    [
        reply(200, "not json"),
        reply(200, {"code": 200, "message": "success"}),
        reply(200, envelope({"status": "QUEUED"})),
    ],
    ids=["not json", "no data", "no task id"],
)
def test_a_malformed_submission_answer_is_outcome_unknown(connection: ConnectionSetter, answer: Reply) -> None:
    script = scripted(answer, then=SUBMITTED)
    with pytest.raises(SubmissionOutcomeUnknownError) as caught:
        make_hook(script).submit_job(REQUEST)
    assert script.posts == 1
    assert isinstance(caught.value.cause, MalformedResponseError)


@pytest.mark.parametrize(
    ("status_code", "body", "error_class", "message"),
    [
        (400, {"code": 400, "message": "prompt violates policy"}, InvalidRequestError, "prompt violates policy"),
        (422, {"error": {"code": "bad_ratio", "message": "aspect ratio"}}, InvalidRequestError, "aspect ratio"),
        (401, {"code": 401, "message": "invalid api key"}, AuthenticationError, "invalid api key"),
        (402, {"code": 402, "message": "insufficient credits"}, AccountError, "insufficient credits"),
        (403, {"error": {"code": "workflow_not_enabled", "message": "not enabled"}}, AccountError, "not enabled"),
    ],
)
def test_client_errors_on_submission_fail_at_once(
    connection: ConnectionSetter, status_code: int, body: Any, error_class: type[HappyHorseError], message: str
) -> None:
    clock = FakeClock()
    script = scripted(reply(status_code, body, {"X-Request-Id": "req-77"}), then=SUBMITTED)
    with pytest.raises(error_class) as caught:
        make_hook(script, clock).submit_job(REQUEST)
    assert script.posts == 1
    assert clock.sleeps == []
    error: Any = caught.value
    assert (error.status_code, error.message, error.request_id) == (status_code, message, "req-77")


# ---------------------------------------------------------------------------------------------------
# Status polls: free and idempotent, so anything transient is retried (boundedly)

TRANSIENT: list[tuple[str, Reply, type[HappyHorseError]]] = [
    ("429", reply(429), RateLimitError),
    ("500", reply(500), ServerError),
    ("502", reply(502), ServerError),
    ("503", reply(503), ServerError),
    ("504", reply(504), ServerError),
    ("connect error", fail(httpx.ConnectError), TransportError),
    ("read timeout", fail(httpx.ReadTimeout), RequestTimeoutError),
    ("dropped connection", fail(httpx.RemoteProtocolError), TransportError),
    ("malformed body", reply(200, "<html>maintenance</html>"), MalformedResponseError),
    ("success without a url", ok_job("SUCCESS"), MalformedResponseError),
]


@pytest.mark.parametrize("failure", [row[1] for row in TRANSIENT], ids=[row[0] for row in TRANSIENT])
def test_status_polls_retry_transient_failures(connection: ConnectionSetter, failure: Reply) -> None:
    clock = FakeClock()
    script = scripted(failure, failure, then=reply(200, envelope(succeeded_data())))
    job = make_hook(script, clock).get_job(JOB_ID)
    assert job.state is JobState.SUCCEEDED
    assert script.status_calls == 3
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize(("failure", "error_class"), [row[1:] for row in TRANSIENT], ids=[row[0] for row in TRANSIENT])
def test_status_poll_retries_stop_at_the_limit(
    connection: ConnectionSetter, failure: Reply, error_class: type[HappyHorseError]
) -> None:
    clock = FakeClock()
    script = scripted(then=failure)
    with pytest.raises(error_class):
        make_hook(script, clock).get_job(JOB_ID)
    assert script.status_calls == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("status_code", "error_class"),
    [(400, InvalidRequestError), (401, AuthenticationError), (403, AccountError), (404, NotFoundError)],
)
def test_status_polls_do_not_retry_client_errors(
    connection: ConnectionSetter, status_code: int, error_class: type[HappyHorseError]
) -> None:
    clock = FakeClock()
    script = scripted(then=reply(status_code))
    with pytest.raises(error_class):
        make_hook(script, clock).get_job(JOB_ID)
    assert script.status_calls == 1
    assert clock.sleeps == []


def test_a_poll_honours_retry_after(connection: ConnectionSetter) -> None:
    clock = FakeClock()
    script = scripted(reply(503, headers={"Retry-After": "20"}), reply(429, headers={"Retry-After": "0"}))
    assert make_hook(script, clock).get_job(JOB_ID).state is JobState.PENDING
    assert clock.sleeps == [20.0, 0.0]


# ---------------------------------------------------------------------------------------------------
# test_connection: bad key, unreachable host, working setup, never a job


NOT_FOUND = reply(404, {"code": 404, "message": "task not found"})
UNAUTHORIZED = reply(401, {"code": 401, "message": "missing or invalid API key"})


@pytest.mark.parametrize(
    ("answers", "ok", "fragment"),
    [
        ([NOT_FOUND, UNAUTHORIZED], True, "Connected to http://hh.test/prefix: HappyHorse checked the API key"),
        ([UNAUTHORIZED], False, "The API key was refused by http://hh.test/prefix (HTTP 401: missing or invalid"),
        ([fail(httpx.ConnectError, "[Errno 111] Connection refused")], False, "Could not reach http://hh.test/prefix"),
        ([fail(httpx.ConnectTimeout)], False, "Could not reach http://hh.test/prefix: ConnectTimeout"),
        ([reply(503, {"code": 503, "message": "busy"})], False, "answered GET http://hh.test/prefix/api/status with"),
        ([reply(403, {"code": 403, "message": "feature disabled"})], False, "(HTTP 403: feature disabled)"),
        # Airflow's own api-server, an HTML page, a lenient catch-all: not HappyHorse.
        ([reply(404, {"detail": "Not Found"})], False, "does not answer like HappyHorse: GET"),
        ([reply(200, "<html>welcome</html>", {"content-type": "text/html"})], False, "text/html: '<html>welcome"),
        ([ok_job()], False, "does not answer like HappyHorse"),
        # The right shape but no key check: a path prefix that misses the API (its own 404 for everything).
        ([NOT_FOUND, NOT_FOUND], False, "answers GET http://hh.test/prefix/api/status without checking the API key"),
    ],
    ids=[
        "working",
        "wrong key",
        "unreachable",
        "connect timeout",
        "server trouble",
        "account",
        "foreign JSON server",
        "html page",
        "lenient server",
        "wrong prefix",
    ],
)
def test_test_connection_tells_the_cases_apart(
    connection: ConnectionSetter, answers: list[Reply], ok: bool, fragment: str
) -> None:
    clock = FakeClock()
    script = scripted(*answers, then=reply(599, "the check sent more requests than it should"))
    result_ok, message = make_hook(script, clock).test_connection()
    assert (result_ok, fragment in message) == (ok, True), message
    assert API_KEY not in message
    assert [request.method for request in script.requests] == ["GET"] * len(answers)  # no retries, no job
    assert all(request.url.params["task_id"] == "airflow-connection-test" for request in script.requests)
    assert script.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert all("authorization" not in request.headers for request in script.requests[1:])
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        ({"password": None}, "This connection has no API key. Put the key from the HappyHorse dashboard"),
        ({"host": "ftp://hh.test"}, "This connection has an unusable Base URL"),
        ({"extra": {"timeout": "soon"}}, "This connection has an extra that is not a number"),
    ],
)
def test_test_connection_names_a_broken_connection_without_its_random_id(
    connection: ConnectionSetter, definition: dict[str, Any], fragment: str
) -> None:
    connection(**definition)
    script = scripted()
    ok, message = make_hook(script).test_connection()
    assert ok is False
    assert message.startswith(fragment), message
    assert "happyhorse_default" not in message
    assert script.requests == []


def test_test_connection_on_a_closed_port(connection: ConnectionSetter, no_proxy: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection(host=f"http://127.0.0.1:{port}")
    clock = FakeClock()
    ok, message = HappyHorseHook(sleep=clock.sleep, clock=clock).test_connection()
    assert ok is False
    assert message.startswith(f"Could not reach http://127.0.0.1:{port}: ConnectError")
    assert clock.sleeps == []


def test_test_connection_against_a_real_server(connection: ConnectionSetter, no_proxy: None) -> None:
    def service(method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if headers.get("authorization") != f"Bearer {API_KEY}":
            return 401, {}, b'{"code": 401, "message": "invalid api key"}'
        return 404, {}, b'{"code": 404, "message": "task not found"}'

    with loopback_server_in_thread(service) as (server, url):
        connection(host=url)
        assert HappyHorseHook().test_connection() == (
            True,
            f"Connected to {url}: HappyHorse checked the API key and accepted it.",
        )
        connection(host=url, password="wrong-key-000000")
        ok, message = HappyHorseHook().test_connection()
        assert (ok, message.startswith(f"The API key was refused by {url} (HTTP 401: invalid api key)")) == (
            False,
            True,
        )
        assert [method for method, _, _ in server.requests] == ["GET", "GET", "GET"]


# ---------------------------------------------------------------------------------------------------
# Redaction: the key appears nowhere a user can see


def exception_texts(error: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(error)), repr(vars(error))]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return texts


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = []
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), formatter.format(record)]
    return texts


def debug_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "aiohttp", "asyncio", "airflow", "airflow_provider_happyhorse"):
        caplog.set_level(logging.DEBUG, logger=name)


def assert_key_nowhere(texts: list[str]) -> None:
    leaks = [text for text in texts if API_KEY in text]
    assert leaks == []


def test_the_key_is_in_no_exception_repr_or_log(
    connection: ConnectionSetter, no_proxy: None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    debug_everything(caplog)
    texts: list[str] = []
    errors: list[HappyHorseError] = []

    # A scripted run with retries and every kind of failure.
    script = scripted(
        fail(httpx.ConnectError),
        reply(429, headers={"Retry-After": "1"}),
        fail(httpx.ReadTimeout),  # the submission: outcome unknown
        reply(503),
        fail(httpx.RemoteProtocolError),
        ok_job(),  # a poll that succeeds after retries
        reply(401, {"code": 401, "message": "invalid api key"}),
        reply(500),  # submission: outcome unknown
        fail(httpx.ConnectError),  # test_connection
        then=reply(404),
    )
    hook = make_hook(script)
    calls: list[Callable[[], object]] = [
        lambda: hook.submit_job(REQUEST),
        lambda: hook.get_job(JOB_ID),
        lambda: hook.get_job(JOB_ID),
        lambda: hook.submit_job(REQUEST),
    ]
    for call in calls:
        try:
            call()
        except HappyHorseError as error:
            errors.append(error)
    texts.append(str(hook.test_connection()))
    texts += [repr(hook), repr(hook.settings), str(hook.settings), repr(vars(hook))]
    assert [type(error) for error in errors] == [
        SubmissionOutcomeUnknownError,
        AuthenticationError,
        SubmissionOutcomeUnknownError,
    ]

    # The same through the real sync transport (httpcore logs at DEBUG) against a real server.
    answers = iter([503, 429, 200, 401])

    def service(method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        status = next(answers, 404)
        payload = envelope(job_data()) if status == 200 else {"code": status, "message": "scripted"}
        return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()

    with loopback_server_in_thread(service) as (server, url):
        connection(host=url)
        real = HappyHorseHook(sleep=lambda seconds: None)
        real.get_job(JOB_ID)
        try:
            real.submit_job(REQUEST)
        except HappyHorseError as error:
            errors.append(error)
        texts.append(str(real.test_connection()))
        texts += [repr(real), repr(real.settings)]
        # The server did get the key: it is the client's output that must not show it.
        assert server.requests[0][2]["authorization"] == f"Bearer {API_KEY}"

    for raised in errors:
        texts += exception_texts(raised)
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    texts += log_texts(caplog)

    # The capture did see the run (so a leak would have been seen too).
    everything = "\n".join(texts)
    assert "HappyHorse call failed" in everything  # the hook's retry log
    assert any(record.name.startswith("httpcore") for record in caplog.records)
    assert any(record.name == "httpx" for record in caplog.records)
    assert_key_nowhere(texts)


async def test_the_key_is_in_no_exception_or_log_on_the_async_path(
    connection: ConnectionSetter, no_proxy: None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    debug_everything(caplog)
    texts: list[str] = []
    errors: list[HappyHorseError] = []
    script = scripted(reply(503), fail(httpx.ReadTimeout), reply(401), then=ok_job())
    hook = make_hook(script)
    async_calls: list[Callable[[], Awaitable[object]]] = [
        lambda: hook.asubmit_job(REQUEST),
        lambda: hook.aget_job(JOB_ID),
    ]
    for async_call in async_calls:
        try:
            await async_call()
        except HappyHorseError as error:
            errors.append(error)
    assert [type(error) for error in errors] == [SubmissionOutcomeUnknownError, AuthenticationError]

    server = LoopbackServer()
    url = await server.start()
    try:
        connection(host=url, conn_id="happyhorse_real")
        real = HappyHorseHook("happyhorse_real", async_sleep=FakeClock().async_sleep)
        assert (await real.aget_job(JOB_ID)).state is JobState.PENDING
        texts += [repr(real), repr(await real.aget_settings())]
    finally:
        await server.stop()

    for raised in errors:
        texts += exception_texts(raised)
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, *log_texts(caplog)]
    assert "HappyHorse call failed" in "\n".join(texts)
    assert_key_nowhere(texts)


def test_settings_repr_hides_the_key() -> None:
    settings = ConnectionSettings(base_url="https://happyhorse.app", api_key=API_KEY)
    assert API_KEY not in repr(settings)
    assert "https://happyhorse.app" in repr(settings)


# ---------------------------------------------------------------------------------------------------
# The async path


async def test_async_submit_and_get_through_the_async_transport(connection: ConnectionSetter) -> None:
    clock = FakeClock()
    script = scripted(
        fail(httpx.ConnectError), SUBMITTED, reply(502), reply(429, headers={"Retry-After": "3"}), then=ok_job("QUEUED")
    )
    hook = HappyHorseHook(async_transport=script.transport(), async_sleep=clock.async_sleep, rng=half)
    submitted = await hook.asubmit_job(REQUEST)
    assert submitted.job_id == JOB_ID
    polled = await hook.aget_job(JOB_ID)
    assert (polled.status, polled.state) == ("QUEUED", JobState.PENDING)
    assert [request.method for request in script.requests] == ["POST", "POST", "GET", "GET", "GET"]
    assert str(script.requests[0].url) == "http://hh.test/prefix/api/generate"
    assert all(request.headers["authorization"] == f"Bearer {API_KEY}" for request in script.requests)
    assert clock.sleeps == [0.5, 0.5, 3.0]


class SyncLookupForbidden(HappyHorseHook):
    """A hook whose blocking connection lookup fails: the async path must never need it."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        raise AssertionError("the blocking connection lookup ran")


@pytest.mark.skipif(
    not HAS_NON_BLOCKING_CONNECTION_LOOKUP,
    reason="before Airflow 3.3.2 the only connection lookup is the blocking one (run in a worker thread)",
)
async def test_async_calls_fetch_the_connection_asynchronously(connection: ConnectionSetter) -> None:
    script = scripted()
    hook = SyncLookupForbidden(async_transport=script.transport())
    assert (await hook.aget_job(JOB_ID)).job_id == JOB_ID
    assert (await hook.aget_settings()).base_url == "http://hh.test/prefix"
    # The sync path does use it, so the override above is really in the way.
    with pytest.raises(AssertionError, match="blocking connection lookup"):
        SyncLookupForbidden(transport=script.transport()).get_job(JOB_ID)


@pytest.mark.skipif(
    HAS_NON_BLOCKING_CONNECTION_LOOKUP, reason="Airflow 3.3.2+ looks the connection up without blocking"
)
async def test_async_calls_run_the_blocking_lookup_off_the_event_loop(connection: ConnectionSetter) -> None:
    lookup_threads: list[int] = []

    class ThreadRecordingHook(HappyHorseHook):
        @classmethod
        def get_connection(cls, conn_id: str) -> Any:
            lookup_threads.append(threading.get_ident())
            return super().get_connection(conn_id)

    hook = ThreadRecordingHook(async_transport=scripted().transport())
    assert (await hook.aget_job(JOB_ID)).job_id == JOB_ID
    assert lookup_threads
    assert threading.get_ident() not in lookup_threads


async def test_async_submission_rule(connection: ConnectionSetter) -> None:
    clock = FakeClock()
    script = scripted(fail(httpx.ReadTimeout), then=SUBMITTED)
    hook = HappyHorseHook(async_transport=script.transport(), async_sleep=clock.async_sleep, rng=half)
    with pytest.raises(SubmissionOutcomeUnknownError):
        await hook.asubmit_job(REQUEST)
    assert script.posts == 1
    assert clock.sleeps == []


async def test_async_poll_retries_are_bounded(connection: ConnectionSetter) -> None:
    clock = FakeClock()
    script = scripted(then=reply(504))
    hook = HappyHorseHook(async_transport=script.transport(), async_sleep=clock.async_sleep, rng=half)
    with pytest.raises(ServerError):
        await hook.aget_job(JOB_ID)
    assert script.status_calls == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    with pytest.raises(ServerError):
        await hook.aget_job(JOB_ID, max_retries=0)
    assert script.status_calls == 6


# ---------------------------------------------------------------------------------------------------
# Pooling: one client per event loop and connection, bounded, closed by its last user


@pytest.mark.parametrize("hooks", [200, 1], ids=["a hook per call", "one hook for all calls"])
async def test_200_concurrent_polls_stay_within_the_pool(
    connection: ConnectionSetter, no_proxy: None, hooks: int
) -> None:
    server = LoopbackServer(delay=0.02)
    url = await server.start()
    try:
        connection(host=url, extra={"max_connections": 10})
        pool = [HappyHorseHook() for _ in range(hooks)]  # the default (aiohttp) async transport
        jobs = await asyncio.gather(*(pool[i % hooks].aget_job(f"job-{i}") for i in range(200)))
        # The last user closed the shared client, and with it every pooled connection.
        assert await server.wait_until_all_closed()
    finally:
        await server.stop()
    assert [job.state for job in jobs] == [JobState.PENDING] * 200
    assert len(server.requests) == 200
    assert 1 <= server.connections <= 10
    assert sorted(target for _, target, _ in server.requests) == sorted(
        f"/api/status?task_id=job-{i}" for i in range(200)
    )
    assert shared_async_transports.open_transports() == 0


async def test_hooks_on_one_loop_and_base_url_share_one_client(connection: ConnectionSetter) -> None:
    connection(host="http://other.test", conn_id="happyhorse_other")
    first, second, other = HappyHorseHook(), HappyHorseHook(), HappyHorseHook("happyhorse_other")
    assert shared_async_transports.open_transports() == 0
    async with first.async_session():
        assert shared_async_transports.open_transports() == 1
        async with second.async_session():
            assert shared_async_transports.open_transports() == 1
            async with first.async_session():  # re-entering in the same task holds nothing new
                assert shared_async_transports.open_transports() == 1
            async with other.async_session():
                assert shared_async_transports.open_transports() == 2
            assert shared_async_transports.open_transports() == 1
        assert shared_async_transports.open_transports() == 1  # the first hook still uses it
    assert shared_async_transports.open_transports() == 0


async def test_one_hook_used_by_several_tasks_keeps_the_client_for_each(connection: ConnectionSetter) -> None:
    # A task that leaves its session must not close the client under another task's request.
    first_request = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def service(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_request.set()
            await release.wait()
            return httpx.Response(503)  # retried: needs the client again after the session below ended
        return httpx.Response(200, json=envelope(job_data()))

    clock = FakeClock()
    hook = HappyHorseHook(async_transport=httpx.MockTransport(service), async_sleep=clock.async_sleep, rng=half)
    async with hook.async_session():
        poll = asyncio.create_task(hook.aget_job(JOB_ID))
        await first_request.wait()
    assert shared_async_transports.open_transports() == 1  # still used by the poll
    release.set()
    job = await poll
    assert job.state is JobState.PENDING
    assert calls == 2
    assert clock.sleeps == [0.5]
    assert shared_async_transports.open_transports() == 0


class ClosingTransport(httpx.MockTransport):
    """A scripted transport that counts how often its client closed it."""

    def __init__(self, script: FakeService) -> None:
        super().__init__(script.handle)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_the_last_user_closes_the_shared_client(connection: ConnectionSetter) -> None:
    transport = ClosingTransport(scripted())
    first, second = HappyHorseHook(async_transport=transport), HappyHorseHook(async_transport=transport)
    await first.aget_job(JOB_ID)
    assert transport.closed == 1  # a lone call opens and closes its client
    async with first.async_session():
        await first.aget_job(JOB_ID)
        async with second.async_session():
            await second.aget_job(JOB_ID)
        await first.aget_job(JOB_ID)
        assert transport.closed == 1  # still in use by the first hook
    assert transport.closed == 2
    assert shared_async_transports.open_transports() == 0


async def test_the_shared_client_is_closed_even_when_a_call_fails(connection: ConnectionSetter) -> None:
    transport = ClosingTransport(scripted(then=reply(401)))
    hook = HappyHorseHook(async_transport=transport)
    with pytest.raises(AuthenticationError):
        await hook.aget_job(JOB_ID)
    assert transport.closed == 1
    assert shared_async_transports.open_transports() == 0


def test_a_key_echoed_by_a_proxy_is_scrubbed_from_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "echoed-key-0123456789abcdef"
    monkeypatch.setenv(
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT",
        json.dumps({"conn_type": "happyhorse", "host": "http://hh.test", "password": key}),
    )

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 400, "message": f"bad header {request.headers['authorization']}"})

    hook = HappyHorseHook(transport=httpx.MockTransport(echo))
    with pytest.raises(InvalidRequestError) as raised:
        hook.get_job("n1")
    assert key not in str(raised.value)
    assert key not in raised.value.message
    assert "bad header Bearer ***" in str(raised.value)


async def test_the_same_on_the_async_path_a_key_echoed_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "echoed-key-0123456789abcdef"
    monkeypatch.setenv(
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT",
        json.dumps({"conn_type": "happyhorse", "host": "http://hh.test", "password": key}),
    )

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 400, "message": f"bad header {request.headers['authorization']}"})

    hook = HappyHorseHook(async_transport=httpx.MockTransport(echo))
    with pytest.raises(InvalidRequestError) as raised:
        await hook.aget_job("n1")
    assert key not in str(raised.value)
    assert key not in raised.value.message
    assert "bad header Bearer ***" in str(raised.value)


async def test_a_triggerer_looks_a_connection_up_once_not_once_per_trigger(connection: ConnectionSetter) -> None:
    connection()
    lookups = 0

    class CountingHook(HappyHorseHook):
        @classmethod
        async def aget_connection(cls, conn_id: str) -> Any:
            nonlocal lookups
            lookups += 1
            await asyncio.sleep(0)  # let the other hooks arrive while this lookup is in flight
            return HappyHorseHook.get_connection(conn_id)

    settings = await asyncio.gather(*(CountingHook().aget_settings() for _ in range(50)))
    assert lookups == 1
    assert len({id(s) for s in settings}) == 1

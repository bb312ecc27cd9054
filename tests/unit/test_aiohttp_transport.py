"""The async path's default transport (aiohttp) against a real server on loopback, through the hook."""

from __future__ import annotations

import gzip
import json
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest

from airflow_provider_happyhorse.aiohttp_transport import httpx_error as aiohttp_httpx_error
from airflow_provider_happyhorse.core.responses import map_transport_error, request_surely_not_sent
from airflow_provider_happyhorse.exceptions import RequestTimeoutError, SubmissionOutcomeUnknownError, TransportError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import JobState, VideoRequest
from support.loopback import LoopbackServer
from support.service import API_KEY, CONN_JSON, JOB_ID, ConnectionSetter, FakeService, envelope, succeeded_data


def gzipped_job(method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    payload = gzip.compress(json.dumps(envelope(succeeded_data())).encode())
    return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, payload


async def test_a_status_poll_sends_the_request_as_built(connection: ConnectionSetter, no_proxy: None) -> None:
    server = LoopbackServer()
    url = await server.start()
    try:
        connection(host=url + "/prefix")
        job = await HappyHorseHook().aget_job(JOB_ID)
    finally:
        await server.stop()
    assert job.state is JobState.PENDING
    ((method, target, headers),) = server.requests
    assert (method, target) == ("GET", f"/prefix/api/status?task_id={JOB_ID}")
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["user-agent"] == "airflow-provider-happyhorse"
    assert "cookie" not in headers


async def test_a_compressed_answer_is_decoded(connection: ConnectionSetter, no_proxy: None) -> None:
    server = LoopbackServer(gzipped_job)
    url = await server.start()
    try:
        connection(host=url)
        job = await HappyHorseHook().aget_job(JOB_ID, max_retries=0)
    finally:
        await server.stop()
    assert job.state is JobState.SUCCEEDED
    assert job.video_url == succeeded_data()["response"]["resultUrls"][0]


async def test_the_connection_timeout_bounds_a_slow_answer(connection: ConnectionSetter, no_proxy: None) -> None:
    server = LoopbackServer(delay=1.0)
    url = await server.start()
    try:
        connection(host=url, extra={"timeout": 0.2})
        with pytest.raises(RequestTimeoutError) as caught:
            await HappyHorseHook().aget_job(JOB_ID, max_retries=0)
    finally:
        await server.stop()
    assert caught.value.request_sent is True
    assert "ReadTimeout" in str(caught.value)


async def test_a_refused_connection_is_known_not_sent(connection: ConnectionSetter, no_proxy: None) -> None:
    server = LoopbackServer()
    url = await server.start()
    await server.stop()  # nothing listens on that port any more
    connection(host=url)
    with pytest.raises(TransportError) as caught:
        await HappyHorseHook().aget_job(JOB_ID, max_retries=0)
    assert caught.value.request_sent is False
    assert "ConnectError" in str(caught.value)


async def test_the_environment_proxy_is_used(connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = LoopbackServer()
    proxy_url = await proxy.start()
    try:
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        connection(host="http://hh.test/prefix")
        job = await HappyHorseHook().aget_job(JOB_ID)
    finally:
        await proxy.stop()
    assert job.state is JobState.PENDING
    ((method, target, headers),) = proxy.requests
    # A forward proxy is sent the absolute URL.
    assert (method, target) == ("GET", f"http://hh.test/prefix/api/status?task_id={JOB_ID}")
    assert headers["authorization"] == f"Bearer {API_KEY}"


# ---------------------------------------------------------------------------------------------------
# The transport's aiohttp errors, as the httpx errors the core reads


def aiohttp_wrapped(error: Exception) -> httpx.TransportError:
    """The exception the async path's transport raises for an aiohttp error."""
    wrapped = aiohttp_httpx_error(error, httpx.Request("POST", "http://hh.test/api/generate"))  # type: ignore[arg-type]
    wrapped.__cause__ = error
    return wrapped


def connection_key() -> Any:
    """What aiohttp's connector errors read of their connection key (its class is aiohttp's private one)."""
    return SimpleNamespace(host="hh.test", port=443, ssl=True, is_ssl=True)


# aiohttp 3.11 tells a DNS failure apart (a ClientConnectorError still); 3.10 raises a plain ClientConnectorError.
DNS_ERROR = getattr(aiohttp, "ClientConnectorDNSError", aiohttp.ClientConnectorError)


AIOHTTP_ERRORS: list[tuple[str, Callable[[], Exception], type[httpx.TransportError], bool, type[TransportError]]] = [
    # (id, aiohttp error, the httpx error the transport raises, surely not sent, what we raise)
    ("server disconnected", aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError, False, TransportError),
    (
        "connection refused",
        lambda: aiohttp.ClientConnectorError(connection_key(), ConnectionRefusedError(111, "Connection refused")),
        httpx.ConnectError,
        True,
        TransportError,
    ),
    (
        "DNS failure",
        lambda: DNS_ERROR(connection_key(), OSError(-2, "Name or service not known")),
        httpx.ConnectError,
        True,
        TransportError,
    ),
    ("connect timeout", aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout, True, RequestTimeoutError),
    ("socket read timeout", aiohttp.SocketTimeoutError, httpx.ReadTimeout, False, RequestTimeoutError),
    ("timeout of unknown phase", aiohttp.ServerTimeoutError, httpx.ReadTimeout, False, RequestTimeoutError),
    ("asyncio timeout", TimeoutError, httpx.ReadTimeout, False, RequestTimeoutError),
    (
        "connection reset",
        lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
        httpx.ReadError,
        False,
        TransportError,
    ),
    ("payload cut short", lambda: aiohttp.ClientPayloadError("truncated"), httpx.ReadError, False, TransportError),
    ("not an http url", lambda: aiohttp.InvalidURL("ftp://x"), httpx.UnsupportedProtocol, False, TransportError),
    ("any other aiohttp error", lambda: aiohttp.ClientError("odd"), httpx.RemoteProtocolError, False, TransportError),
]


@pytest.mark.parametrize(
    ("make_error", "httpx_type", "not_sent", "mapped"),
    [row[1:] for row in AIOHTTP_ERRORS],
    ids=[row[0] for row in AIOHTTP_ERRORS],
)
def test_aiohttp_errors_say_whether_the_request_left(
    make_error: Callable[[], Exception],
    httpx_type: type[httpx.TransportError],
    not_sent: bool,
    mapped: type[TransportError],
) -> None:
    cause = make_error()
    wrapped = aiohttp_wrapped(cause)
    assert type(wrapped) is httpx_type
    assert request_surely_not_sent(wrapped) is not_sent
    error = map_transport_error(wrapped)
    assert type(error) is mapped
    assert error.request_sent is not not_sent
    assert f"({type(cause).__name__})" in str(error)


def raising(error: httpx.TransportError) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error

    return answer


async def test_a_server_disconnect_during_submission_is_outcome_unknown_not_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    service = FakeService(faults=deque([raising(aiohttp_wrapped(aiohttp.ServerDisconnectedError()))]))
    hook = HappyHorseHook(async_transport=service.transport(), rng=lambda: 0.5)
    with pytest.raises(SubmissionOutcomeUnknownError, match="ServerDisconnectedError"):
        await hook.asubmit_job(VideoRequest.parse({"prompt": "a horse"}))
    assert service.posts == 1


async def test_an_aiohttp_connection_refusal_during_submission_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    refused = aiohttp_wrapped(aiohttp.ClientConnectorError(connection_key(), ConnectionRefusedError(111, "refused")))
    service = FakeService(faults=deque([raising(refused)]))
    hook = HappyHorseHook(
        async_transport=service.transport(), sleep=lambda s: None, async_sleep=_no_sleep, rng=lambda: 0.5
    )
    job = await hook.asubmit_job(VideoRequest.parse({"prompt": "a horse"}))
    assert job.job_id == JOB_ID
    assert service.posts == 2


async def _no_sleep(seconds: float) -> None:
    return None

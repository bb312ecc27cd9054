"""The async path's default transport (aiohttp) against a real server on loopback, through the hook."""

from __future__ import annotations

import gzip
import json

import pytest

from airflow_provider_happyhorse.exceptions import RequestTimeoutError, TransportError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import JobState
from unit.conftest import API_KEY, JOB_ID, ConnectionSetter, LoopbackServer, envelope, succeeded_data


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
        job = await HappyHorseHook().aget_job(JOB_ID, max_attempts=1)
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
            await HappyHorseHook().aget_job(JOB_ID, max_attempts=1)
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
        await HappyHorseHook().aget_job(JOB_ID, max_attempts=1)
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

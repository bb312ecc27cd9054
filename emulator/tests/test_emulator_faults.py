"""Every injected fault, observed with its rate at 1.0; decisions are seeded and reproducible."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from happyhorse_emulator import EmulatorServer


def test_server_errors_on_generate_sometimes_come_after_the_task_was_created(api, emulator: EmulatorServer) -> None:
    emulator.configure(faults={"server_error_rate": 1.0})
    responses = [api.generate(api.body(prompt=f"clip {i}")) for i in range(40)]
    assert {response.status_code for response in responses} == {500, 502, 503, 504}
    retry_afters = {r.headers.get("Retry-After") for r in responses if r.status_code == 503}
    assert retry_afters == {None, "1"}  # 503 sometimes says when to come back
    html = [r for r in responses if r.status_code in (502, 504)]
    assert all(r.headers["content-type"].startswith("text/html") for r in html)  # gateways answer HTML

    stats = emulator.stats()
    created = stats["faults"]["by_kind"]["server_error_after_create"]
    assert stats["faults"]["by_kind"]["server_error"] == 40
    assert stats["faults"]["total"] == 40
    assert 0 < created < 40
    assert stats["jobs"]["total"] == created == stats["submissions"]["accepted"]
    assert stats["submissions"]["faulted"] == 40 - created
    # The submission rule: a 503 with Retry-After never created a task.
    safe = sum(1 for r in responses if r.status_code == 503 and "Retry-After" in r.headers)
    assert created <= 40 - safe


def test_invalid_request_behind_a_failing_gateway_creates_nothing(api, emulator: EmulatorServer) -> None:
    emulator.configure(faults={"server_error_rate": 1.0})
    for _ in range(10):
        assert api.generate({"model": "wrong"}).status_code >= 500
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 0
    assert stats["submissions"]["faulted"] == 10


def test_faults_on_selects_the_endpoint(api, emulator: EmulatorServer) -> None:
    emulator.configure(faults={"server_error_rate": 1.0, "faults_on": ["status"]})
    task_id = api.submit()
    assert api.http.get("/api/status", params={"task_id": task_id}).status_code in {500, 502, 503, 504}
    emulator.configure(faults={"faults_on": ["generate"]})
    assert api.status(task_id)["code"] == 200
    assert api.generate(api.body()).status_code >= 500


def test_rate_limit_storm_uses_both_retry_after_forms(api, emulator: EmulatorServer) -> None:
    emulator.configure(faults={"rate_limit_storm_rate": 1.0})
    responses = [api.generate(api.body()) for _ in range(20)]
    assert {response.status_code for response in responses} == {429}
    forms = set()
    for response in responses:
        value = response.headers["Retry-After"]
        if value.isdigit():
            forms.add("seconds")
            assert 1 <= int(value) <= 2
        else:
            forms.add("date")
            delay = parsedate_to_datetime(value).timestamp() - time.time()
            assert -1 < delay <= 3
    assert forms == {"seconds", "date"}
    assert emulator.stats()["faults"]["by_kind"]["rate_limit_storm"] == 20
    assert emulator.stats()["jobs"]["total"] == 0


def test_slow_post_creates_the_task_before_the_client_times_out(api, emulator: EmulatorServer) -> None:
    emulator.configure(faults={"slow_response_rate": 1.0, "slow_response_seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        api.generate(api.body(), timeout=httpx.Timeout(5.0, read=0.15))
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 1  # the read-timeout trap: the task exists
    assert stats["submissions"]["accepted"] == 1
    assert stats["faults"]["by_kind"]["slow_response"] == 1


def test_slow_status_answers_after_the_delay(api, emulator: EmulatorServer) -> None:
    task_id = api.submit()
    emulator.configure(faults={"slow_response_rate": 1.0, "slow_response_seconds": 0.3})
    started = time.monotonic()
    assert api.status(task_id)["data"]["task_id"] == task_id
    assert time.monotonic() - started >= 0.3


def test_drop_after_create_creates_a_task_the_client_never_hears_of(
    api, emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.configure(faults={"drop_after_create_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        api.generate(api.body())
    assert not [record for record in caplog.records if record.exc_info]  # an injected drop is not a crash
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 1  # the double-submit trap
    assert stats["submissions"]["accepted"] == 1
    assert stats["faults"]["by_kind"]["drop_after_create"] == 1
    # A client that blindly resubmits pays twice, and the stats show it.
    with pytest.raises(httpx.RemoteProtocolError):
        api.generate(api.body())
    assert emulator.stats()["duplicate_submissions"] == 1


def test_drop_before_create_creates_nothing(api, emulator: EmulatorServer) -> None:
    emulator.configure(faults={"drop_before_create_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        api.generate(api.body())
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 0
    assert stats["submissions"]["faulted"] == 1
    assert stats["faults"]["by_kind"]["drop_before_create"] == 1


def _is_malformed(response: httpx.Response) -> bool:
    try:
        payload = json.loads(response.content)
    except ValueError:
        return True
    return not isinstance(payload, dict) or not isinstance(payload.get("data"), dict)


def test_malformed_bodies_on_both_endpoints(api, emulator: EmulatorServer) -> None:
    task_id = api.submit()
    emulator.configure(faults={"malformed_body_rate": 1.0})
    created = [api.generate(api.body()) for _ in range(10)]
    polled = [api.http.get("/api/status", params={"task_id": task_id}) for _ in range(10)]
    for response in created + polled:
        assert response.status_code == 200
        assert _is_malformed(response), response.content
    assert len({response.content for response in created + polled}) >= 3
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 11  # on POST the task was created anyway
    assert stats["faults"]["by_kind"]["malformed_body"] == 20


def test_admin_and_file_routes_never_get_faults(api, fast: EmulatorServer) -> None:
    task_id = api.submit(duration=3, sound=False)
    api.wait_until_final(task_id)
    rates = {
        name: 1.0
        for name in (
            "server_error_rate",
            "rate_limit_storm_rate",
            "slow_response_rate",
            "drop_after_create_rate",
            "drop_before_create_rate",
            "malformed_body_rate",
        )
    }
    fast.configure(faults=rates)
    assert api.http.get(f"/files/{task_id}.mp4").status_code == 200
    assert api.http.get("/_emulator/images/32x32.png").status_code == 200
    assert api.http.get("/_emulator/health").status_code == 200
    assert api.http.get("/_emulator/stats").status_code == 200
    assert api.http.post("/_emulator/config", json={"seed": 3}).status_code == 200
    assert api.http.post("/_emulator/reset").status_code == 200


def test_fault_decisions_are_reproducible(api, emulator: EmulatorServer) -> None:
    emulator.configure(seed=1234, faults={"server_error_rate": 0.4, "malformed_body_rate": 0.3})

    def run() -> list[tuple[int, bytes]]:
        return [(r.status_code, r.content[:20]) for r in (api.generate(api.body()) for _ in range(25))]

    first = run()
    emulator.reset()  # re-seeds
    assert run() == first
    assert len({status for status, _ in first}) > 1


# -- result files: how CDN-backed services misbehave ------------------------------------------------------


def _probe(data: bytes) -> tuple[float, bool]:
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        return float(container.duration or 0) / av.time_base, bool(container.streams.audio)


def test_result_urls_redirect_to_a_signed_url_that_serves_the_file(api, fast: EmulatorServer) -> None:
    task_id = api.submit(duration=3, sound=False)
    api.wait_until_final(task_id)
    plain = api.http.get(f"/files/{task_id}.mp4")
    fast.configure(redirect_results=True)
    first = api.http.get(f"/files/{task_id}.mp4")
    assert first.status_code == 302
    signed = first.headers["location"]
    assert signed.startswith(f"{fast.base_url}/files/{task_id}.mp4?expires=")
    assert "&sig=" in signed
    followed = httpx.get(signed, trust_env=False)  # no key: a CDN URL is not the API's
    assert followed.status_code == 200
    assert followed.content == plain.content
    fast.configure(redirect_results=False, faults={"result_redirect_rate": 0.5})
    codes = [api.http.get(f"/files/{task_id}.mp4").status_code for _ in range(40)]
    assert set(codes) == {200, 302}  # the rate mixes both
    assert fast.stats()["faults"]["by_kind"]["result_redirect"] == 1 + codes.count(302)


def test_a_refused_signed_url_answers_200_with_an_html_page(api, fast: EmulatorServer) -> None:
    task_id = api.submit(duration=3, sound=False)
    api.wait_until_final(task_id)
    fast.configure(faults={"signed_url_refused_rate": 1.0})
    response = api.http.get(f"/files/{task_id}.mp4")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert b"Request has expired" in response.content
    assert fast.stats()["faults"]["by_kind"]["signed_url_refused"] == 1


def test_a_cut_body_agrees_with_its_content_length(api, fast: EmulatorServer) -> None:
    task_id = api.submit(duration=3, sound=False)
    api.wait_until_final(task_id)
    whole = api.http.get(f"/files/{task_id}.mp4").content
    fast.configure(faults={"cut_body_rate": 1.0})
    cut = api.http.get(f"/files/{task_id}.mp4")
    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    assert int(cut.headers["content-length"]) == len(cut.content)  # only a demuxer can tell
    assert fast.stats()["faults"]["by_kind"]["cut_body"] == 1


def test_a_mismatched_clip_is_short_or_silent(api, fast: EmulatorServer) -> None:
    fast.configure(faults={"clip_mismatch_rate": 1.0})
    found = set()
    for i in range(12):
        task_id = api.submit(prompt=f"clip {i}", duration=5, sound=True)
        api.wait_until_final(task_id)
        seconds, audio = _probe(api.http.get(f"/files/{task_id}.mp4").content)
        found.add("duration" if abs(seconds - 3.0) < 0.2 else "audio" if not audio else "none")
    assert found == {"duration", "audio"}
    assert fast.stats()["faults"]["by_kind"]["clip_mismatch"] == 12

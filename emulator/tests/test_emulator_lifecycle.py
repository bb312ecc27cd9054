"""The job lifecycle, the concurrency cap, the rate limit, result expiry, stats, reset and runtime config."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest

from happyhorse_emulator import EmulatorServer, key_id


def test_queued_then_in_progress_then_success(api, fast: EmulatorServer) -> None:
    fast.configure(max_concurrent_per_key=1, base_seconds=40)  # 0.4 s each: room for a slow machine
    first = api.submit()
    created = api.generate(api.body(prompt="second"))
    second = created.json()["data"]["task_id"]
    assert created.json()["data"]["status"] == "QUEUED"
    assert api.status(first)["data"]["status"] == "IN_PROGRESS"

    payload, seen = api.wait_until_final(second)
    assert seen == ["QUEUED", "IN_PROGRESS", "SUCCESS"]
    assert payload == {
        "code": 200,
        "message": "success",
        "data": {
            "task_id": second,
            "status": "SUCCESS",
            "response": {"resultUrls": [f"{fast.base_url}/files/{second}.mp4"]},
        },
    }
    assert api.status(first)["data"]["status"] == "SUCCESS"


def test_in_progress_response_is_null(api, fast: EmulatorServer) -> None:
    task_id = api.submit()
    assert api.status(task_id) == {
        "code": 200,
        "message": "success",
        "data": {"task_id": task_id, "status": "IN_PROGRESS", "response": None},
    }


def test_failed_job_carries_its_reason(api, fast: EmulatorServer) -> None:
    fast.configure(job_failure_rate=1.0)
    task_id = api.submit()
    payload, seen = api.wait_until_final(task_id)
    assert seen == ["IN_PROGRESS", "FAILED"]
    assert payload["data"]["response"] is None
    assert payload["data"]["error_message"]
    assert payload["message"] == "success"
    assert fast.stats()["jobs"]["by_state"]["FAILED"] == 1
    assert api.http.get(f"/files/{task_id}.mp4").status_code == 404


def test_render_time_follows_the_model(api, emulator: EmulatorServer) -> None:
    # 0.01 * (10 + 2 * 5) * 1.5 (pro) * 2 (audio) = 0.6 s; std without audio: 0.2 s.
    emulator.configure(base_seconds=10, per_video_second=2, pro_factor=1.5, audio_factor=2, jitter=0)
    slow = api.submit(mode="pro", sound=True, duration=5)
    quick = api.submit(mode="std", sound=False, duration=5)
    jobs = {job.task_id: job for job in emulator.emulator.store}
    assert jobs[slow].finished - jobs[slow].started == pytest.approx(0.6)
    assert jobs[quick].finished - jobs[quick].started == pytest.approx(0.2)


def test_concurrency_cap_queues_per_key(api, fast: EmulatorServer) -> None:
    fast.configure(max_concurrent_per_key=2, api_keys=[fast.api_key, "second-key"], base_seconds=50)
    task_ids = [api.submit(prompt=f"clip {i}") for i in range(5)]
    statuses = [api.status(task_id)["data"]["status"] for task_id in task_ids]
    assert statuses == ["IN_PROGRESS", "IN_PROGRESS", "QUEUED", "QUEUED", "QUEUED"]
    # Another key has its own slots.
    other = api.http.post("/api/generate", json=api.body(), headers={"Authorization": "Bearer second-key"})
    assert other.json()["data"]["status"] == "IN_PROGRESS"
    assert fast.stats()["jobs"]["by_state"] == {"QUEUED": 3, "IN_PROGRESS": 3, "SUCCESS": 0, "FAILED": 0}

    for task_id in task_ids:
        assert api.wait_until_final(task_id)[0]["data"]["status"] == "SUCCESS"
    stats = fast.stats()
    assert stats["peak_concurrent_renders_by_key"] == {key_id(fast.api_key): 2, key_id("second-key"): 1}
    assert stats["peak_concurrent_renders"] == 3


def test_rate_limit_answers_429_with_retry_after(api, emulator: EmulatorServer) -> None:
    emulator.configure(rate_limit_per_second=0.5, rate_limit_burst=2)
    task_id = api.submit()
    assert api.http.get("/api/status", params={"task_id": task_id}).status_code == 200
    limited = api.http.get("/api/status", params={"task_id": task_id})
    assert limited.status_code == 429
    assert limited.json()["code"] == 429
    assert limited.headers["Retry-After"].isdigit()
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    refused = api.generate(api.body())
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    stats = emulator.stats()
    assert stats["rate_limited"] == 2
    assert stats["jobs"]["total"] == 1
    assert stats["submissions"]["refused_by_status"] == {"429": 1}


def test_result_file_expires_with_410(api, fast: EmulatorServer) -> None:
    fast.configure(result_ttl_seconds=0.5)
    task_id = api.submit(duration=3, sound=False)
    payload, _ = api.wait_until_final(task_id)
    url = payload["data"]["response"]["resultUrls"][0]
    assert api.http.get(url).status_code == 200
    job = fast.emulator.store.get(task_id)
    time.sleep(max(0.0, job.finished + 0.5 - time.time()) + 0.05)
    expired = api.http.get(url)
    assert expired.status_code == 410
    assert expired.json() == {"code": 410, "message": "result expired"}
    assert fast.stats()["files_expired"] == 1


def test_file_of_unknown_or_unfinished_job_is_404(api, fast: EmulatorServer) -> None:
    task_id = api.submit()
    assert api.http.get(f"/files/{task_id}.mp4").status_code == 404
    assert api.http.get("/files/n00000000hh00.mp4").status_code == 404
    assert api.http.get(f"/files/{task_id}").status_code == 404


def test_result_url_follows_the_host_the_client_used(api, fast: EmulatorServer) -> None:
    task_id = api.submit()
    api.wait_until_final(task_id)
    # Any Host the emulator answers to (a foreign one is refused: see test_emulator_admin.py).
    response = api.http.get("/api/status", params={"task_id": task_id}, headers={"Host": "localhost:9999"})
    url = response.json()["data"]["response"]["resultUrls"][0]
    assert url == f"http://localhost:9999/files/{task_id}.mp4"


def test_stats_count_submissions_duplicates_and_status_calls(api, emulator: EmulatorServer) -> None:
    body = api.body(duration=4)
    first = api.generate(body).json()["data"]["task_id"]
    api.generate(body)
    api.generate(api.body(duration=4, prompt="different"))
    api.generate({"model": "nope"})
    api.status(first)
    api.status(first)
    api.http.get("/api/status", params={"task_id": first}, headers={"Authorization": "Bearer nope"})

    stats = api.http.get("/_emulator/stats").json()
    assert stats == emulator.stats() | {"uptime_seconds": stats["uptime_seconds"]}
    key = key_id(emulator.api_key)
    assert stats["submissions"] == {
        "total": 4,
        "accepted": 3,
        "refused": 1,
        "faulted": 0,
        "refused_by_status": {"400": 1},
        "by_key": {key: {"total": 4, "accepted": 3, "refused": 1, "faulted": 0}},
    }
    assert stats["status_calls"] == {"total": 3, "not_found": 0, "by_key": {key: 2, key_id("nope"): 1}}
    assert stats["jobs"]["total"] == 3
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert stats["duplicate_submissions"] == 1
    assert stats["duplicated_fingerprints"] == [{"key_id": key, "fingerprint": fingerprint, "count": 2}]
    assert stats["faults"]["total"] == 0
    assert stats["file_downloads"] == 0


def test_reset_forgets_jobs_and_counters(api, emulator: EmulatorServer) -> None:
    task_id = api.submit()
    assert api.http.post("/_emulator/reset").json() == {"status": "reset"}
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 0
    assert stats["submissions"]["total"] == 0
    assert api.http.get("/api/status", params={"task_id": task_id}).status_code == 404


def test_runtime_config_over_http_is_partial_and_validated(api, emulator: EmulatorServer) -> None:
    response = api.http.post("/_emulator/config", json={"speed": 0.5, "faults": {"server_error_rate": 0.25}})
    assert response.status_code == 200
    config = response.json()
    assert config["speed"] == 0.5
    assert config["faults"]["server_error_rate"] == 0.25
    assert config["faults"]["faults_on"] == ["generate", "status"]
    assert emulator.config.faults.server_error_rate == 0.25
    assert api.http.get("/_emulator/config").json() == config

    for bad in ({"speed": -1}, {"no_such_knob": 1}, {"faults": {"server_error_rate": 2}}, [1]):
        refused = api.http.post("/_emulator/config", json=bad)
        assert refused.status_code == 400, bad
    assert emulator.config.speed == 0.5


def test_handle_configure_and_restore(emulator: EmulatorServer) -> None:
    initial = emulator.config
    changed = emulator.configure(max_concurrent_per_key=None, faults={"faults_on": ["status"]})
    assert changed.max_concurrent_per_key is None
    assert changed.faults.faults_on == ("status",)
    emulator.restore()
    assert emulator.config == initial == emulator.initial_config


def test_admin_routes_can_be_switched_off(api, emulator: EmulatorServer) -> None:
    assert api.http.get("/_emulator/health").json()["status"] == "ok"
    emulator.configure(admin_routes=False)
    for method, path in [("GET", "/_emulator/health"), ("GET", "/_emulator/stats"), ("POST", "/_emulator/reset")]:
        assert api.http.request(method, path).status_code == 404
    assert api.http.post("/_emulator/config", json={"admin_routes": True}).status_code == 404
    assert api.submit()  # the API itself still works
    assert emulator.stats()["jobs"]["total"] == 1  # and the in-process handle still sees everything


def test_status_variants_use_the_alternative_spellings(api, emulator: EmulatorServer) -> None:
    emulator.configure(
        base_seconds=10,
        per_video_second=0,
        jitter=0,
        max_concurrent_per_key=1,
        job_failure_rate=0.5,
        faults={"status_variant_rate": 1.0},
    )
    created = [api.generate(api.body(prompt=f"clip {i}")).json()["data"] for i in range(12)]
    queued = {data["status"] for data in created[1:]}
    assert queued <= {"NOT_START", "PENDING"}
    assert queued == {"NOT_START", "PENDING"}

    finals = [api.wait_until_final(data["task_id"])[0] for data in created]
    assert {payload["data"]["status"] for payload in finals} == {"COMPLETED", "FAILURE", "CANCELLED"}
    reason_fields = set()
    for payload in finals:
        data = payload["data"]
        assert "error_message" not in data
        if data["status"] == "COMPLETED":
            assert data["response"]["resultUrls"][0].endswith(".mp4")
            assert payload["message"] == "success"
        elif payload["message"] != "success":
            reason_fields.add("message")
        else:
            (field,) = {"error", "fail_reason"} & data.keys()
            assert data[field]
            reason_fields.add(field)
    assert reason_fields == {"error", "fail_reason", "message"}
    assert emulator.stats()["faults"]["by_kind"]["status_variant"] == 12


def test_unknown_status_shows_for_a_while_then_the_job_proceeds(api, emulator: EmulatorServer) -> None:
    emulator.configure(base_seconds=60, per_video_second=0, jitter=0, faults={"unknown_status_rate": 1.0})
    task_id = api.submit()
    payload, seen = api.wait_until_final(task_id)
    assert seen[0] in {"RENDERING_PREVIEW", "POST_PROCESSING", "UPSCALING"}
    assert seen[1:] == ["IN_PROGRESS", "SUCCESS"]
    assert payload["data"]["response"]["resultUrls"]
    assert emulator.stats()["faults"]["by_kind"]["unknown_status"] == 1


def test_default_test_config_renders_in_about_half_a_second(api, emulator: EmulatorServer) -> None:
    task_id = api.submit()  # 5 s with sound: 0.01 * (20 + 3 * 5) * 1.2 = 0.42 s, +/- 10 %
    job = emulator.emulator.store.get(task_id)
    assert job.finished - job.created == pytest.approx(0.42, rel=0.11)
    assert api.wait_until_final(task_id)[0]["data"]["status"] == "SUCCESS"


def test_http_client_sees_plain_json_content_type(http: httpx.Client) -> None:
    response = http.post("/api/generate", json={"model": "happyhorse-1.0/video", "prompt": "x"})
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)

"""Bearer keys, account errors in both of the service's error shapes, and unknown task ids."""

from __future__ import annotations

import httpx
import pytest

from happyhorse_emulator import EmulatorServer, key_id

BODY = {"model": "happyhorse-1.0/video", "prompt": "a horse"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic emulator-demo-key"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong-key", "wrong-scheme", "empty"],
)
def test_bad_or_missing_key_is_401_on_both_endpoints(emulator: EmulatorServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=emulator.base_url, headers=headers, trust_env=False) as http:
        created = http.post("/api/generate", json=BODY)
        polled = http.get("/api/status", params={"task_id": "n12345678hh00"})
    for response in (created, polled):
        assert response.status_code == 401
        assert response.json() == {"code": 401, "message": "missing or invalid API key"}
    assert emulator.stats()["jobs"]["total"] == 0


def test_bearer_scheme_is_case_insensitive_and_every_listed_key_works(emulator: EmulatorServer) -> None:
    emulator.configure(api_keys=["first-key", "second-key"])
    with httpx.Client(base_url=emulator.base_url, trust_env=False) as http:
        for header in ("Bearer first-key", "bearer second-key"):
            assert http.post("/api/generate", json=BODY, headers={"Authorization": header}).status_code == 200
    assert emulator.stats()["jobs"]["by_key"] == {key_id("first-key"): 1, key_id("second-key"): 1}


def test_key_without_credits_gets_402(emulator: EmulatorServer) -> None:
    emulator.configure(no_credit_keys=["broke-key"])
    with httpx.Client(base_url=emulator.base_url, trust_env=False) as http:
        response = http.post("/api/generate", json=BODY, headers={"Authorization": "Bearer broke-key"})
    assert response.status_code == 402
    assert response.json() == {"code": 402, "message": "insufficient credits"}
    assert emulator.stats()["jobs"]["total"] == 0


def test_key_without_the_feature_gets_403_in_the_other_error_shape(emulator: EmulatorServer) -> None:
    emulator.configure(forbidden_keys=["basic-plan-key"])
    with httpx.Client(base_url=emulator.base_url, trust_env=False) as http:
        response = http.post("/api/generate", json=BODY, headers={"Authorization": "Bearer basic-plan-key"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "workflow_not_enabled"
    assert error["message"]
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 0
    assert stats["submissions"]["refused_by_status"] == {"403": 1}


def test_unknown_task_id_is_404(http: httpx.Client, emulator: EmulatorServer) -> None:
    response = http.get("/api/status", params={"task_id": "n00000000hh00"})
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert emulator.stats()["status_calls"]["not_found"] == 1


def test_another_keys_task_is_404(http: httpx.Client, emulator: EmulatorServer) -> None:
    emulator.configure(api_keys=[emulator.api_key, "other-key"])
    task_id = http.post("/api/generate", json=BODY).json()["data"]["task_id"]
    response = http.get("/api/status", params={"task_id": task_id}, headers={"Authorization": "Bearer other-key"})
    assert response.status_code == 404


def test_status_without_task_id_is_400(http: httpx.Client) -> None:
    response = http.get("/api/status")
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "task_id: required"}


def test_wrong_method_and_unknown_path(http: httpx.Client) -> None:
    assert http.get("/api/generate").status_code == 405
    assert http.post("/api/status").status_code == 405
    assert http.get("/api/nothing-here").status_code == 404
    assert http.get("/_emulator/nothing-here").json() == {"code": 404, "message": "not found"}
    assert http.post("/files/n00000000hh00.mp4").json() == {"code": 405, "message": "method not allowed"}

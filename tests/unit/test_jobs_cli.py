"""``happyhorse-jobs`` against a scripted Airflow REST API (the real one is in tests/e2e)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.jobs_cli import run

RECORD = {"fingerprint": "f" * 64, "submitted_at": "2026-11-01T00:00:05+00:00", "job_id": None}
ARGS = ["--dag-id", "daily", "--run-id", "manual__2026-11-01T00:00:00+00:00", "--task-id", "clip"]
PATH = "/api/v2/dags/daily/dagRuns/manual__2026-11-01T00:00:00+00:00/taskInstances/clip/state-store/happyhorse_job"


class AirflowAPI:
    """Airflow's task-state-store routes for one task instance, with a token check."""

    def __init__(self, record: dict[str, Any] | None, *, token: str | None = None) -> None:
        self.record = record
        self.token = token
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/auth/token":
            body = json.loads(request.content)
            if body != {"username": "admin", "password": "secret"}:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            return httpx.Response(201, json={"access_token": "minted"})
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"detail": "Not authenticated"})
        if request.url.path != PATH or request.url.params.get("map_index") != "-1":
            return httpx.Response(404, json={"detail": "Task instance not found for dag_id='daily', ..."})
        if request.method == "DELETE":
            self.record = None
            return httpx.Response(204)
        if self.record is None:
            return httpx.Response(404, json={"detail": "Task state store key 'happyhorse_job' not found"})
        return httpx.Response(200, json={"key": "happyhorse_job", "value": self.record, "updated_at": "x"})


def cli(api: AirflowAPI, *argv: str) -> int:
    return run([*argv, "--api-url", "http://airflow.test"], transport=httpx.MockTransport(api))


def test_show_explains_a_record_whose_outcome_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    api = AirflowAPI(RECORD)
    assert cli(api, "show", *ARGS) == 0
    out = capsys.readouterr().out
    assert "daily / manual__2026-11-01T00:00:00+00:00 / clip: task state store key 'happyhorse_job'" in out
    assert "job id:       none: a try sent the submission and never learned its outcome" in out
    assert [request.method for request in api.requests] == ["GET"]


def test_forget_deletes_the_record_and_says_what_follows(capsys: pytest.CaptureFixture[str]) -> None:
    api = AirflowAPI({**RECORD, "job_id": "n92abc"})
    assert cli(api, "forget", *ARGS) == 0
    assert api.record is None
    out = capsys.readouterr().out
    assert "job id:       n92abc" in out
    assert "Forgotten. Clear the task to submit the request anew (it is paid again)." in out
    assert cli(api, "show", *ARGS) == 0
    assert "no HappyHorse job is remembered; its next try submits a new one" in capsys.readouterr().out


def test_credentials_are_exchanged_for_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    api = AirflowAPI(RECORD, token="minted")
    assert cli(api, "show", "--json", *ARGS, "--username", "admin", "--password", "secret") == 0
    assert json.loads(capsys.readouterr().out) == RECORD
    assert cli(api, "show", *ARGS) == 2
    assert "Airflow refused the request (HTTP 401): give --token, or --username" in capsys.readouterr().err


def test_an_unknown_task_instance_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(AirflowAPI(RECORD), "forget", "--dag-id", "daily", "--run-id", "nope", "--task-id", "clip") == 2
    assert "No task instance daily / nope / clip" in capsys.readouterr().err


def test_an_unreachable_api_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    assert run(["show", *ARGS, "--api-url", "http://airflow.test"], transport=httpx.MockTransport(refuse)) == 2
    assert "could not reach Airflow's API at http://airflow.test ([Errno 111] Connection refused); give --api-url" in (
        capsys.readouterr().err
    )

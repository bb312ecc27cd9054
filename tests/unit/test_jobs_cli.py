"""``happyhorse-jobs`` against a scripted Airflow REST API (the real one is in tests/e2e)."""

from __future__ import annotations

import getpass
import io
import json
import sys
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.jobs_cli import run

RECORD = {"fingerprint": "f" * 64, "submitted_at": "2026-11-01T00:00:05+00:00", "job_id": None}
ARGS = ["--dag-id", "daily", "--run-id", "manual__2026-11-01T00:00:00+00:00", "--task-id", "clip"]
PATH = "/api/v2/dags/daily/dagRuns/manual__2026-11-01T00:00:00+00:00/taskInstances/clip/state-store/happyhorse_job"
# A value that appears nowhere else: if it shows up in the output, the command echoed a secret.
SECRET = "hunter2-Zq8xV3"


@pytest.fixture(autouse=True)
def no_credentials_around(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the developer's environment nor a terminal: each test gives what it means to give."""
    for name in ("AIRFLOW_API_TOKEN", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # isatty() is False

    def no_prompt(prompt: str = "") -> str:
        raise AssertionError(f"prompted without a terminal: {prompt!r}")

    monkeypatch.setattr(getpass, "getpass", no_prompt)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


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


def cli(api: AirflowAPI, *argv: str, url: str = "http://airflow.test") -> int:
    return run([*argv, "--api-url", url], transport=httpx.MockTransport(api))


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


def test_a_token_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = AirflowAPI(RECORD, token=SECRET)
    assert cli(api, "show", *ARGS) == 2
    assert (
        "Airflow refused the request (HTTP 401): set $AIRFLOW_API_TOKEN, or --username (or $AIRFLOW_USERNAME) "
        "and $AIRFLOW_PASSWORD" in capsys.readouterr().err
    )
    monkeypatch.setenv("AIRFLOW_API_TOKEN", SECRET)
    assert cli(api, "show", "--json", *ARGS) == 0
    assert json.loads(capsys.readouterr().out) == RECORD
    assert api.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert "/auth/token" not in [request.url.path for request in api.requests]


@pytest.mark.parametrize("username_from", ["option", "environment"])
def test_a_password_from_the_environment_is_exchanged_for_a_token(
    username_from: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = AirflowAPI(RECORD, token="minted")
    monkeypatch.setenv("AIRFLOW_PASSWORD", "secret")
    user = ["--username", "admin"] if username_from == "option" else []
    if username_from == "environment":
        monkeypatch.setenv("AIRFLOW_USERNAME", "admin")
    assert cli(api, "show", "--json", *ARGS, *user) == 0
    assert json.loads(capsys.readouterr().out) == RECORD
    assert [request.url.path for request in api.requests] == ["/auth/token", PATH]
    assert api.requests[-1].headers["authorization"] == "Bearer minted"


def test_the_password_is_asked_for_at_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts: list[str] = []

    def typed(prompt: str = "") -> str:
        prompts.append(prompt)
        return "secret"

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(getpass, "getpass", typed)
    api = AirflowAPI(RECORD, token="minted")
    assert cli(api, "show", "--json", *ARGS, "--username", "admin", url="https://airflow.test") == 0
    assert json.loads(capsys.readouterr().out) == RECORD
    assert prompts == ["Password for admin at https://airflow.test: "]
    assert api.requests[-1].headers["authorization"] == "Bearer minted"


def test_without_a_password_or_a_terminal_the_command_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    api = AirflowAPI(RECORD, token="minted")
    assert cli(api, "show", *ARGS, "--username", "admin", url="https://airflow.test") == 2
    err = capsys.readouterr().err
    assert "no password for 'admin': set $AIRFLOW_PASSWORD (or use a token in $AIRFLOW_API_TOKEN instead)" in err
    assert "It is not accepted as an option on purpose: ps shows the command line" in err
    assert api.requests == []  # nothing was sent, not even an empty password


@pytest.mark.parametrize(
    ("argv", "instead"),
    [
        (["show", *ARGS, "--password", SECRET], "$AIRFLOW_PASSWORD"),
        (["show", *ARGS, f"--password={SECRET}"], "$AIRFLOW_PASSWORD"),
        (["forget", *ARGS, "--pass", SECRET], "$AIRFLOW_PASSWORD"),
        (["--password", SECRET, "show", *ARGS], "$AIRFLOW_PASSWORD"),
        (["show", *ARGS, "--token", SECRET], "$AIRFLOW_API_TOKEN"),
        (["--token", SECRET, "forget", *ARGS], "$AIRFLOW_API_TOKEN"),
    ],
)
def test_a_secret_given_as_an_option_is_refused_without_repeating_it(
    argv: list[str], instead: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = AirflowAPI(RECORD)
    assert run([*argv, "--api-url", "http://airflow.test"], transport=httpx.MockTransport(api)) == 2
    out, err = capsys.readouterr()
    assert "is not accepted: a value on the command line is visible to every user of the machine (ps shows it)" in err
    assert f"Put it in {instead}" in err
    assert SECRET not in out + err
    assert api.requests == []


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://airflow.example.com:8080", True),
        ("http://10.0.0.5:8080", True),
        ("HTTP://[2001:db8::1]:8080", True),
        ("http://localhost:8080", False),
        ("http://127.0.0.1:8080", False),
        ("http://127.8.9.10:8080", False),
        ("http://[::1]:8080", False),
        ("https://airflow.example.com", False),
    ],
)
def test_credentials_over_plain_http_to_another_machine_are_warned_about(
    url: str, warned: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_API_TOKEN", SECRET)
    assert cli(AirflowAPI(RECORD, token=SECRET), "show", *ARGS, url=url) == 0
    err = capsys.readouterr().err
    warning = "crosses the network in clear text; use an https:// API URL."
    assert (warning in err) is warned
    if warned:
        assert err.count("\n") == 1
        assert err.startswith(f"happyhorse-jobs: warning: {url} is plain http")
        assert SECRET not in err
    else:
        assert err == ""


def test_no_warning_when_no_credentials_are_sent(capsys: pytest.CaptureFixture[str]) -> None:
    # An API server that lets anonymous requests through (simple_auth_manager_all_admins): nothing to leak.
    assert cli(AirflowAPI(RECORD), "show", *ARGS, url="http://airflow.example.com") == 0
    assert capsys.readouterr().err == ""


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

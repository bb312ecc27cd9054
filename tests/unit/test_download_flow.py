"""
Downloading a result as a flow (``core.flows.download_flow``): which errors are tried again, how long it waits,
when it gives up; driven by hand with scripted outcomes, and by the hook against the scripted service. The waits
expected here are written out from the policy's rule (Retry-After capped, else initial * 2**(n-1) * rng), not
computed by the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_happyhorse.core.flows import Fetch, Sleep, download_flow
from airflow_provider_happyhorse.core.retries import RetryPolicy, retry_decision
from airflow_provider_happyhorse.exceptions import (
    ClipMismatchError,
    DownloadLimitError,
    DownloadRefusedError,
    HappyHorseError,
    InvalidClipError,
    MalformedResponseError,
    RateLimitError,
    ResultUnavailableError,
    ServerError,
    SubmissionOutcomeUnknownError,
    TransportError,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.storage import store_clip
from support.service import CLIP, CONN_JSON, FakeService, reply, resolve, serve_clip

POLICY = RetryPolicy(max_retries=3, submit_max_retries=2, initial_delay=1.0, max_delay=30.0, max_retry_after=60.0)
URL = "http://cdn.test/files/n92abc123hh10.mp4"
JOB = "n92abc123hh10"


def half() -> float:
    return 0.5


def drive(flow: Any, outcomes: list[Any]) -> tuple[list[Fetch | Sleep], Any]:
    """Run a download flow, answering each Fetch with the next outcome; returns (actions, result or error raised)."""
    actions: list[Fetch | Sleep] = []
    answers = iter(outcomes)
    sent: Any = None
    try:
        while True:
            action = flow.send(sent)
            actions.append(action)
            if isinstance(action, Fetch):
                sent = next(answers)  # StopIteration here would mean more fetches than scripted: a failure
                assert isinstance(sent, (HappyHorseError, str))
            else:
                sent = None
    except StopIteration as stop:
        return actions, stop.value
    except HappyHorseError as error:
        return actions, error


def dropped() -> TransportError:
    return TransportError("the connection dropped", request_sent=True)


def not_a_video() -> InvalidClipError:
    return InvalidClipError(JOB, URL, "an HTML page")


@pytest.mark.parametrize(
    ("outcomes", "fetches", "sleeps", "result"),
    [
        (["clip"], 1, [], "clip"),
        ([dropped(), "clip"], 2, [0.5], "clip"),
        ([not_a_video(), ServerError("x", status_code=502), dropped(), "clip"], 4, [0.5, 1.0, 2.0], "clip"),
        ([RateLimitError("slow down", retry_after=7.0), "clip"], 2, [7.0], "clip"),
        ([RateLimitError("slow down", retry_after=900.0), "clip"], 2, [60.0], "clip"),  # capped
        ([MalformedResponseError("x", status_code=200), "clip"], 2, [0.5], "clip"),
        ([dropped()] * 4, 4, [0.5, 1.0, 2.0], TransportError),  # three retries, then the last error
        ([ResultUnavailableError(JOB, URL, "HTTP 410")], 1, [], ResultUnavailableError),
        ([DownloadRefusedError(JOB, "10.0.0.1", "a private address")], 1, [], DownloadRefusedError),
        ([DownloadLimitError(JOB, "cdn.test", "too big")], 1, [], DownloadLimitError),
        ([ClipMismatchError(JOB, ["5 s, not 10 s"])], 1, [], ClipMismatchError),
    ],
    ids=[
        "at once",
        "dropped once",
        "not a video, 502, dropped",
        "429 Retry-After",
        "Retry-After capped",
        "malformed",
        "exhausted",
        "gone",
        "refused",
        "over a limit",
        "mismatch",
    ],
)
def test_download_flow(outcomes: list[Any], fetches: int, sleeps: list[float], result: Any) -> None:
    actions, outcome = drive(download_flow(POLICY, JOB, URL, rng=half), outcomes)
    assert sum(isinstance(action, Fetch) for action in actions) == fetches
    assert all(action == Fetch(JOB, URL) for action in actions if isinstance(action, Fetch))
    assert [action.seconds for action in actions if isinstance(action, Sleep)] == sleeps
    if isinstance(result, str):
        assert outcome == result
    else:
        assert type(outcome) is result
        assert outcome is outcomes[-1]  # the error met, not a wrapper


def test_the_download_flow_reports_each_retry() -> None:
    seen: list[tuple[str, int, float]] = []
    flow = download_flow(POLICY, JOB, URL, rng=half, on_retry=lambda e, n, d: seen.append((type(e).__name__, n, d)))
    drive(flow, [not_a_video(), RateLimitError("x", retry_after=3.0), "clip"])
    assert seen == [("InvalidClipError", 1, 0.5), ("RateLimitError", 2, 3.0)]


def test_the_download_flow_refuses_to_be_fed_nothing() -> None:
    flow = download_flow(POLICY, JOB, URL, rng=half)
    assert flow.send(None) == Fetch(JOB, URL)
    with pytest.raises(TypeError, match="must be sent what the fetch got"):
        flow.send(None)


# -- the one decision, whichever call asks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "call", "retries", "expected"),
    [
        (dropped(), "download", 0, 0.5),
        (dropped(), "status", 0, 0.5),
        (dropped(), "submit", 0, None),  # sent: a job may exist
        (TransportError("x", request_sent=False), "submit", 0, 0.5),
        (dropped(), "download", 2, 2.0),
        (dropped(), "download", 3, None),  # max_retries spent
        (not_a_video(), "download", 0, 0.5),
        (not_a_video(), "status", 0, None),  # only a download's body can be a CDN's momentary refusal
        (RateLimitError("x", retry_after=5.0), "submit", 0, 5.0),
        (ServerError("x", status_code=503, retry_after=4.0), "submit", 0, 4.0),
        (ServerError("x", status_code=500), "submit", 0, None),
        (ServerError("x", status_code=500), "status", 1, 1.0),
        (ResultUnavailableError(JOB, URL, "HTTP 403"), "download", 0, None),
        (SubmissionOutcomeUnknownError(dropped()), "status", 0, None),
    ],
)
def test_retry_decision(error: HappyHorseError, call: Any, retries: int, expected: float | None) -> None:
    assert retry_decision(error, call, retries, POLICY.max_retries, POLICY, half) == expected


# -- driven by the hook, against the scripted service ---------------------------------------------------------


def test_the_hook_drives_the_download_with_its_own_sleep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    service = FakeService()
    service.file_faults.extend([serve_clip(fail_after=3), reply(502, "busy"), serve_clip(b"<html>no</html>")])
    slept: list[float] = []
    hook = HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=slept.append, rng=lambda: 0.25)
    _, downloaded = store_clip(hook, job_id=JOB, url=URL, destination=tmp_path / "c.mp4")
    assert (downloaded, (tmp_path / "c.mp4").read_bytes()) == (True, CLIP)
    # The connection's defaults: first wait 1 s, doubling; times the hook's random 0.25.
    assert slept == [0.25, 0.5, 1.0]
    assert service.downloads == 4


def test_the_hook_gives_up_on_a_permanent_error_without_sleeping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    service = FakeService()
    service.file_faults.append(reply(410, "gone"))
    slept: list[float] = []
    hook = HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=slept.append, rng=lambda: 0.25)
    with pytest.raises(ResultUnavailableError, match="HTTP 410"):
        store_clip(hook, job_id=JOB, url=URL, destination=tmp_path / "c.mp4")
    assert (slept, service.downloads) == ([], 1)
    assert list(tmp_path.iterdir()) == []

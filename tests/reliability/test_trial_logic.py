"""The reliability suite's logic, without Airflow: only the checks that, broken, would let a trial pass a broken
provider (each test says which), and the provider's own refusals of the bad-input and user-mistakes tables. (The
suite itself runs in ``test_reliability.py``.)"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_happyhorse.exceptions import HappyHorseError, InvalidRequestError
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from happyhorse_emulator import EmulatorServer
from harness.airflow_cluster import TaskInstanceInfo
from reliability import egress_guard
from reliability import hostile as hostile_service
from reliability.bad_inputs import BAD_INPUTS, BadInput
from reliability.gateway import FaultGateway, GatewayFaults
from reliability.mistakes import MISTAKES, case_kwargs, conn_typo, fill
from reliability.report import Row
from reliability.trials import hostile, mistakes, storm

CLEAN_STATS: dict[str, Any] = {
    "submissions": {"total": 3, "accepted": 3},
    "jobs": {"total": 3},
    "duplicate_submissions": 0,
    "duplicated_fingerprints": [],
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"duplicate_submissions": 1}, "duplicate paid submission"),
        ({"jobs": {"total": 4}}, "jobs for fewer submissions"),
        ({"submissions": {"total": 3, "accepted": 2}}, "accepted submissions but"),
    ],
)
def test_a_paid_job_too_many_fails_the_row(change: dict[str, Any], problem: str) -> None:
    """Guards the provider tests: if the row's API-count check broke, every trial would pass a provider that paid
    twice."""
    row = Row(trial="t", item="1")
    row.check_api_counts({**copy.deepcopy(CLEAN_STATS), **change})
    assert not row.passed
    assert problem in row.problems[0]


def test_a_task_with_a_problem_is_unexpected_and_fails_the_row() -> None:
    """Guards the provider tests: if a task's problems were not counted, a trial would pass with a file left at the
    final path."""
    row = Row(trial="t", item="8", runs=2)
    row.count_task([], expect_success=True, where="video 0")
    row.count_task(["a file was at the final path"], expect_success=True, where="video 1")
    assert (row.succeeded, row.unexpected, row.passed) == (1, 1, False)
    assert row.problems == ["video 1: a file was at the final path"]


def test_the_storm_faults_a_fifth_of_each_endpoint() -> None:
    """Guards the provider tests: if the storm's rates fell, the storm trial would pass with the provider's retries
    barely tried."""
    assert pytest.approx(0.2) == 1 - (1 - storm.PER_KIND) ** storm.STATUS_FAULT_KINDS
    assert pytest.approx(0.2) == storm.GENERATE_429 + (1 - storm.GENERATE_429) * storm.GENERATE_503


def test_gateway_answers_generate_faults_itself_and_forwards_the_rest(emulator: EmulatorServer) -> None:
    """Guards the provider tests: if the gateway faulted nothing, or forwarded what it faulted, the storm trial would
    pass without faults or miscount paid jobs."""
    gateway = FaultGateway(
        emulator.base_url, GatewayFaults(generate_rate_limit_rate=0.3, generate_unavailable_rate=0.3, seed=1)
    ).start()
    try:
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        answers = [
            httpx.post(
                f"{gateway.base_url}/api/generate",
                json={"model": "happyhorse-1.0/video", "prompt": f"gateway {index}"},
                headers=headers,
            )
            for index in range(30)
        ]
    finally:
        gateway.stop()
    faulted = [answer for answer in answers if answer.status_code != 200]
    assert faulted, "the seed must fault some requests"
    assert {answer.status_code for answer in faulted} <= {429, 503}
    assert all(answer.headers["retry-after"] == "1" for answer in faulted)
    # A faulted request never reached the API: no job can exist behind it.
    assert emulator.stats()["submissions"]["total"] == len(answers) - len(faulted)
    assert gateway.stats()["generate_forwarded"] == len(answers) - len(faulted)


def test_the_dashscope_gateway_faults_its_routes_in_its_shape_and_forwards_the_rest() -> None:
    """Guards trial 4d: if the gateway did not know DashScope's routes it would fault nothing there, and a 429 or
    503 the dialect does not read as retry-safe would fail the storm's tasks instead of testing the retries."""
    import httpx as client

    from airflow_provider_happyhorse.core.dialects import DASHSCOPE
    from airflow_provider_happyhorse.core.retries import is_retryable_submit_error
    from happyhorse_emulator import EmulatorConfig

    with EmulatorServer(EmulatorConfig(dialect="dashscope", speed=0.01)) as emulator:
        gateway = FaultGateway(
            emulator.base_url,
            GatewayFaults(
                generate_rate_limit_rate=0.3,
                generate_unavailable_rate=0.3,
                status_drop_rate=0.5,
                seed=1,
                dialect="dashscope",
            ),
        ).start()
        try:
            headers = {"Authorization": f"Bearer {emulator.api_key}", "X-DashScope-Async": "enable"}
            body = {"model": "happyhorse-1.0-t2v", "input": {"prompt": "gateway"}, "parameters": {"duration": 3}}
            answers = [
                client.post(
                    f"{gateway.base_url}/api/v1/services/aigc/video-generation/video-synthesis",
                    json=body,
                    headers=headers,
                )
                for _ in range(30)
            ]
            task_id = next(answer for answer in answers if answer.status_code == 200).json()["output"]["task_id"]
            polls = []
            for _ in range(10):
                try:
                    polls.append(client.get(f"{gateway.base_url}/api/v1/tasks/{task_id}", headers=headers).status_code)
                except client.TransportError:
                    polls.append(0)
        finally:
            gateway.stop()
        faulted = [answer for answer in answers if answer.status_code != 200]
        assert faulted, "the seed must fault some requests"
        for answer in faulted:
            error = DASHSCOPE.error_of(answer.status_code, answer.json(), answer)
            assert error.error_code == {429: "Throttling.RateQuota", 503: "ServiceUnavailable"}[answer.status_code]
            assert error.retry_after == 1
            assert is_retryable_submit_error(error)
        assert emulator.stats()["submissions"]["total"] == len(answers) - len(faulted)
        assert gateway.stats()["generate_forwarded"] == len(answers) - len(faulted)
        assert 0 in polls  # dropped by the gateway
        assert 200 in polls  # forwarded
        assert gateway.stats()["status"] == 10


def test_the_dashscope_storm_runs_only_when_named() -> None:
    """4d starts 20 renders of its own: not in the default run, only with ``--only 4d``."""
    from reliability.plan import DEFAULT
    from reliability.trials import build_suite

    suite = build_suite(DEFAULT)
    assert "4d" not in [trial.item for trial in suite.without_optional().trials]
    assert "4" in [trial.item for trial in suite.without_optional().trials]
    chosen = suite.only({"4d"}).trials
    assert [trial.dag_id for trial in chosen] == ["rel_storm_dashscope"]
    spec = chosen[0].api_spec()
    assert spec is not None
    assert spec.gateway is not None
    assert (spec.config.dialect, spec.connection_extra["dialect"], spec.gateway.dialect) == ("dashscope",) * 3


def test_bad_input_table_has_at_least_30_distinct_cases() -> None:
    """Guards the provider tests: if the bad-input table shrank or repeated a case, trial 7 would pass checking fewer
    refusals."""
    assert len(BAD_INPUTS) >= 30
    assert len({case.label for case in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize(
    "case", [case for case in BAD_INPUTS if case.field != "max_credits"], ids=lambda case: case.label
)
def test_bad_input_is_refused_naming_field_and_rule(case: BadInput) -> None:
    from airflow_provider_happyhorse.core.dialects import HAPPYHORSE

    # The trial's connection is happyhorse.app: the model refuses, or else that dialect's rules do (2500 characters,
    # three ratios), as the operator applies both before anything is sent.
    try:
        refused: InvalidRequestError | None = HAPPYHORSE.refusal(
            GenerateVideoOperator(task_id="t", **case.kwargs).video_request()
        )
    except InvalidRequestError as error:
        refused = error
    assert refused is not None, case.label
    assert f"{case.field}:" in str(refused)
    assert case.rule in str(refused)


# -- trial 9: user mistakes -------------------------------------------------------------------------------


def test_mistakes_table_has_at_least_12_distinct_cases() -> None:
    """Guards the provider tests: if two mistakes shared a message, trial 9 would pass a refusal that names the wrong
    mistake."""
    assert len(MISTAKES) >= 12
    assert len({case.label for case in MISTAKES}) == len(MISTAKES)
    assert len({case.message for case in MISTAKES}) == len(MISTAKES)
    assert all(case.wrong != case.fixed or case.connection is not None for case in MISTAKES)


@pytest.fixture
def mistake_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> MistakePlaces:
    """The trial's places and connections, as environment connections pointing at the test emulator."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "blocker").write_text("a file")
    conn_id = "rel_mistakes"
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    places = {"<api>": emulator.base_url, "<key>": emulator.api_key, "<dead>": mistakes.free_loopback_url()}

    def define(index: int, *, fixed: bool) -> dict[str, Any]:
        case = MISTAKES[index]
        if case.connection is not None:
            fields = {**case.connection.fields, **(case.connection.fix if fixed else {})}
            value = {"conn_type": "happyhorse", **{k: fill(v, places) for k, v in fields.items() if v is not None}}
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}_{case.connection.name.upper()}", json.dumps(value))
        where = {
            "<conn-typo>": conn_typo(conn_id),
            "<conn>": conn_id,
            "<prompt>": f"mistake {index}",
            "<clips>": str(clips),
            "<case>": f"case-{index}",
            "<blocker>": str(clips / "blocker"),
        }
        return case_kwargs(case, fixed=fixed, places=where)

    return define


MistakePlaces = Callable[..., dict[str, Any]]


def _refusal(operator: GenerateVideoOperator) -> str:
    """The operator's message for its mistake: from the preflight, or from the API's refusal of the submission."""
    try:
        request = operator._preflight()
    except AirflowFailException as error:
        return str(error)
    operator.hook.sleep = lambda _seconds: None  # the unreachable URL's connect retries
    with pytest.raises(HappyHorseError) as raised:
        operator.hook.submit_job(request)
    return str(operator._not_submitted(raised.value))


@pytest.mark.parametrize("index", range(len(MISTAKES)), ids=[case.label for case in MISTAKES])
def test_each_mistake_is_refused_with_its_message_and_its_fix_is_paid_once(
    index: int, mistake_places: MistakePlaces, emulator: EmulatorServer
) -> None:
    case = MISTAKES[index]
    wrong = GenerateVideoOperator(task_id="t", **mistake_places(index, fixed=False))
    assert case.message in _refusal(wrong)
    assert emulator.stats()["submissions"]["accepted"] == 0

    fixed = GenerateVideoOperator(task_id="t", **mistake_places(index, fixed=True))
    fixed.hook.submit_job(fixed._preflight())
    assert emulator.stats()["submissions"]["accepted"] == 1


def _ti(state: str, try_number: int = 1) -> TaskInstanceInfo:
    return TaskInstanceInfo(
        id="i",
        dag_id="d",
        run_id="r",
        task_id="render",
        map_index=0,
        state=state,
        try_number=try_number,
        start_date=None,
        end_date=None,
        duration=None,
    )


@pytest.mark.parametrize(
    ("ti", "texts", "submitted", "record", "problem"),
    [
        (_ti("success"), None, False, mistakes.NO_RECORD, "ended success before the fix"),
        (_ti("failed", 2), None, False, mistakes.NO_RECORD, "took 2 tries"),
        (_ti("failed"), ["some other error"], False, mistakes.NO_RECORD, "no error saying"),
        (_ti("failed"), None, True, mistakes.NO_RECORD, "a job was submitted"),
        (_ti("failed"), None, False, "a record: {...}", "the task state store kept a record"),
    ],
)
def test_a_refusal_that_ran_paid_or_left_a_record_is_a_problem(
    ti: TaskInstanceInfo, texts: list[str] | None, submitted: bool, record: str, problem: str
) -> None:
    """Guards the provider tests: if a refusal that paid, retried or left a record were not a problem, trial 9 would
    pass it."""
    case = MISTAKES[0]
    problems, _ = mistakes.refusal_problems(case, ti, texts or [case.message], submitted, record)
    assert len(problems) == 1
    assert problem in problems[0]


def _mistake_stats(total: int, accepted: int, refused: dict[str, int], duplicates: int = 0) -> dict[str, Any]:
    return {
        "submissions": {"total": total, "accepted": accepted, "refused_by_status": refused},
        "jobs": {"total": accepted},
        "duplicate_submissions": duplicates,
    }


@pytest.mark.parametrize(
    ("before", "after", "problem"),
    [
        (_mistake_stats(1, 1, {}), _mistake_stats(4, 4, {}), "before the fix: 1 paid submissions"),
        (_mistake_stats(2, 0, {"401": 2}), _mistake_stats(5, 3, {"401": 2}), "expected only {'401': 1}"),
        (_mistake_stats(1, 0, {"401": 1}), _mistake_stats(5, 4, {"401": 1}, duplicates=1), "4 paid, for 3"),
        (_mistake_stats(1, 0, {"401": 1}), _mistake_stats(5, 3, {"401": 2}), "the API refused more"),
    ],
)
def test_api_counts_of_mistakes_with_a_payment_too_many_fail(
    before: dict[str, Any], after: dict[str, Any], problem: str
) -> None:
    """Guards the provider tests: if trial 9's API counts ignored a payment, it would pass a mistake that was paid
    for."""
    problems = mistakes.api_problems(before, after, 3, {"401": 1})
    assert any(problem in text for text in problems), problems


# -- trial 10: the hostile service ----------------------------------------------------------------------


def hostile_evidence(case: str = "link_local", **change: Any) -> hostile.CaseEvidence:
    """The evidence of a case that went as it should."""
    expected = hostile.EXPECTATIONS[case] if case != "normal" else hostile.NORMAL
    job = "hh001abc"
    url_host = {"link_local": "169.254.169.254", "private": "10.255.255.1"}.get(case, "127.0.0.1")
    text = (
        f"AirflowFailException: The video of HappyHorse job {job} was not downloaded: the URL on host "
        f"'{url_host}' is a link-local address (where cloud metadata services answer). Nothing was fetched from it."
    )
    evidence = hostile.CaseEvidence(
        expected=expected,
        index=0,
        state=expected.state,
        try_number=1,
        texts=["Deferring on job hh001abc", text],
        job_id=job,
        host=url_host,
        egress_lines=[],
        forbidden_requests=[],
        keyed_downloads=0,
        foreign_places=[],
        file_problems=[],
        triggerer_problems=[],
        others=(6, 6),
        paid=1,
        jobs=1,
    )
    for name, value in change.items():
        setattr(evidence, name, value)
    return evidence


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"state": "success"}, "ended success, expected failed"),
        ({"try_number": 2}, "took 2 tries"),
        ({"texts": ["AirflowException: HappyHorse job hh001abc: something else"]}, "no text in its log names"),
        ({"job_id": "hh999zzz"}, "no text in its log names"),
        ({"host": "10.255.255.1"}, "no text in its log names"),
        ({"egress_lines": ["pid=1 address=('169.254.169.254', 80)"]}, "connect(s) outside loopback refused"),
        ({"forbidden_requests": ["GET /clip-hh001abc.mp4"]}, "the 127.0.0.2 listener was fetched from"),
        ({"keyed_downloads": 1}, "carried the API key"),
        ({"foreign_places": ["marker in logs/scheduler.log:3"]}, "foreign body or secret is in the logs"),
        ({"file_problems": ["a file at a final path: ['link_local.mp4']"]}, "a file at a final path"),
        ({"triggerer_problems": ["the triggerer's processes changed"]}, "the triggerer's processes changed"),
        ({"others": (5, 6)}, "only 5 of the 6 other renders"),
        ({"paid": 2}, "2 paid submission(s)"),
        ({"paid": 0, "jobs": 0}, "0 paid submission(s)"),
    ],
)
def test_each_check_of_a_hostile_case_can_fail_it(change: dict[str, Any], problem: str) -> None:
    """Guards the provider tests: if one of trial 10's checks broke, it would pass a hostile case without checking that
    thing."""
    verdict = hostile.judge(hostile_evidence(**change))
    assert not verdict.passed
    assert any(problem in text for text in verdict.problems), verdict.problems


def test_a_try_failed_past_a_limit_is_retried_once_and_a_refusal_is_not() -> None:
    """Guards the provider tests: if tries were not counted, trial 10 would pass a refusal that was retried (a second
    fetch)."""
    text = "AirflowException: The video of HappyHorse job hh001abc from http://127.0.0.1:1/f.mp4: max_download_bytes"
    endless = {"texts": [text], "host": "127.0.0.1"}
    assert hostile.judge(hostile_evidence("endless", try_number=2, **endless)).problems == []
    assert "took 1 tries, expected 2" in hostile.judge(hostile_evidence("endless", try_number=1, **endless)).problems
    assert "took 2 tries, expected 1" in hostile.judge(hostile_evidence(try_number=2)).problems


def test_the_needles_must_be_in_one_text_not_spread_over_the_log() -> None:
    """Guards the provider tests: if the needles could be spread over the log, trial 10 would pass an error that names
    no job or host."""
    spread = ["job hh001abc failed", "host '169.254.169.254'", "was not downloaded: a link-local address"]
    problems = hostile.judge(hostile_evidence(texts=spread)).problems
    assert any("no text in its log names" in text for text in problems), problems


def tampered_view(**change: Any) -> hostile.ViewEvidence:
    view = hostile.ViewEvidence(
        before_status=200,
        before_is_clip=True,
        after={
            "video": (404, '{"detail": "not served: the clip\'s record beside it is missing"}'),
            "poster": (404, '{"detail": "not served: the poster path is not the poster beside the stored clip"}'),
        },
    )
    for name, value in change.items():
        setattr(view, name, value)
    return view


@pytest.mark.parametrize(
    ("view", "problem"),
    [
        (None, "the view was never read"),
        (tampered_view(before_status=404), "before the tampering the view answered 404"),
        (tampered_view(before_is_clip=False), "not the clip (control)"),
        (tampered_view(after={"video": (200, "SECRET"), "poster": (404, "record")}), "answered 200, expected 404"),
        (tampered_view(after={"video": (404, '{"detail": "Not here"}'), "poster": (404, "record")}), "names no rule"),
        (tampered_view(secret_in_body=["video"]), "the secret file's bytes were served"),
        (tampered_view(error="ApiError: 400"), "reading the view failed"),
    ],
)
def test_each_check_of_a_tampered_case_can_fail_it(view: hostile.ViewEvidence | None, problem: str) -> None:
    """Guards the provider tests: if a check of the view's evidence broke, trial 10 would pass a view that served a
    tampered clip."""
    verdict = hostile.judge(hostile_evidence("tampered_xcom", texts=[], view=view))
    assert any(problem in text for text in verdict.problems), verdict.problems


def test_a_log_place_is_attributed_to_its_task() -> None:
    """Guards the provider tests: if a log place were given to the wrong case, trial 10 would drop a secret found in a
    task log."""
    place = "/h/logs/dag_id=rel_hostile/run_id=r1/task_id=render/map_index=3/attempt=1.log:12"
    assert hostile.attribute(place, "rel_hostile", "r1") == 3
    assert hostile.attribute(place, "rel_hostile", "r2") is None
    assert hostile.attribute("/h/logs/scheduler.log:4", "rel_hostile", "r1") is None


def test_every_hostile_case_has_an_expectation_and_a_prompt() -> None:
    """Guards the provider tests: if a case had no expectation or its prompt chose another, trial 10 would skip that
    case or run it as normal."""
    assert tuple(hostile.EXPECTATIONS) == hostile_service.CASES
    for case in hostile_service.CASES:
        assert hostile_service.case_of(f"hostile:{case} batch b") == case
    assert hostile_service.case_of("a horse crossing a river") == hostile_service.NORMAL
    assert hostile_service.case_of("hostile:unknown") == hostile_service.NORMAL


def test_the_hostile_service_answers_each_case_and_records_every_request() -> None:
    """Guards the provider tests: if the hostile service did not record a request, trial 10 would pass a fetch from the
    forbidden listener."""
    with hostile_service.HostileService("k", "MARK", render_seconds=0) as service, httpx.Client(timeout=5) as client:
        keyed = {"Authorization": "Bearer k"}
        body = {"model": "happyhorse-1.0/video", "prompt": "hostile:redirect_loopback x", "duration": 3}
        job_id = client.post(f"{service.base_url}/api/generate", json=body, headers=keyed).json()["data"]["task_id"]
        status = client.get(f"{service.base_url}/api/status", params={"task_id": job_id}, headers=keyed).json()
        (url,) = status["data"]["response"]["resultUrls"]
        hop = client.get(url)
        assert hop.status_code == 302
        assert hop.headers["location"].startswith(service.forbidden_url)
        assert b"MARK" in hop.content
        bad = {**body, "prompt": "hostile:bad_job_id x"}
        assert (
            client.post(f"{service.base_url}/api/generate", json=bad, headers=keyed)
            .json()["data"]["task_id"]
            .startswith("../../etc/x-")
        )
        assert client.post(f"{service.base_url}/api/generate", json=body).status_code == 401
        assert client.get(f"{service.forbidden_url}/anything").content.startswith(b"MARK")
    listeners = [(record.listener, record.path) for record in service.records()]
    assert ("forbidden", "/anything") in listeners
    assert sum(service.submissions().values()) == 2


def test_the_egress_guard_refuses_and_records_a_connect_outside_loopback(tmp_path: Path) -> None:
    """Guards the provider tests: if the egress guard neither refused nor logged, trial 10 would pass a connect to an
    internal address."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(Path(egress_guard.__file__).read_text())
    log = tmp_path / "refused.log"
    script = (
        "import socket\n"
        "server = socket.create_server(('127.0.0.2', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=2).close()\n"
        "try:\n"
        "    socket.create_connection(('10.255.255.1', 9), timeout=0.5)\n"
        "except PermissionError as error:\n"
        "    print('refused', error)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), egress_guard.LOG_VARIABLE: str(log)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused reliability egress guard")
    (line,) = log.read_text().splitlines()
    assert "('10.255.255.1', 9)" in line
    (loaded,) = Path(egress_guard.loaded_log(str(log))).read_text().splitlines()
    assert loaded.startswith("pid=")


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        (("127.0.0.1", 80), False),
        (("127.0.0.2", 80), False),
        (("::1", 80, 0, 0), False),
        (("::ffff:127.0.0.1", 80, 0, 0), False),
        (("localhost", 80), False),
        ("/run/airflow.sock", False),
        (("169.254.169.254", 80), True),
        (("10.255.255.1", 80), True),
        (("::ffff:10.0.0.1", 80, 0, 0), True),
        (("example.com", 443), True),
    ],
)
def test_the_egress_guard_allows_only_loopback(address: Any, refused: bool) -> None:
    """Guards the provider tests: if the egress guard allowed an internal address, trial 10 would pass a connect to it
    unlogged."""
    assert (egress_guard.refusal(address) is not None) is refused

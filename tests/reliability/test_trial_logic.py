"""The reliability suite's own logic, without Airflow: verdicts, the table, log layout, the fault gateway, the
bad-input table and the user-mistakes table. (The suite itself runs in ``test_reliability.py``.)"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_happyhorse.emulator import EmulatorServer
from airflow_provider_happyhorse.exceptions import HappyHorseError, InvalidRequestError
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from harness.airflow_cluster import TaskInstanceInfo
from reliability.bad_inputs import BAD_INPUTS, BadInput
from reliability.gateway import FaultGateway, GatewayFaults
from reliability.lab import TaskLogs
from reliability.mistakes import MISTAKES, case_kwargs, conn_typo, fill
from reliability.report import Row, markdown_table
from reliability.trials import mistakes, storm

CLEAN_STATS: dict[str, Any] = {
    "submissions": {"total": 3, "accepted": 3},
    "jobs": {"total": 3},
    "duplicate_submissions": 0,
    "duplicated_fingerprints": [],
}


def test_clean_api_counts_pass() -> None:
    row = Row(trial="t", item="1")
    row.check_api_counts(CLEAN_STATS)
    assert row.passed


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"duplicate_submissions": 1}, "duplicate paid submission"),
        ({"jobs": {"total": 4}}, "jobs for fewer submissions"),
        ({"submissions": {"total": 3, "accepted": 2}}, "accepted submissions but"),
    ],
)
def test_a_paid_job_too_many_fails_the_row(change: dict[str, Any], problem: str) -> None:
    row = Row(trial="t", item="1")
    row.check_api_counts({**copy.deepcopy(CLEAN_STATS), **change})
    assert not row.passed
    assert problem in row.problems[0]


def test_a_task_with_a_problem_is_unexpected_and_fails_the_row() -> None:
    row = Row(trial="t", item="8", runs=2)
    row.count_task([], expect_success=True, where="video 0")
    row.count_task(["a file was at the final path"], expect_success=True, where="video 1")
    assert (row.succeeded, row.unexpected, row.passed) == (1, 1, False)
    assert row.problems == ["video 1: a file was at the final path"]


def test_table_has_a_verdict_per_row_and_escapes_cells() -> None:
    good = Row(trial="a | b", item="1", runs=1, succeeded=1, submissions=1, jobs=1, duplicates=0)
    bad = Row(trial="c", item="2", problems=["x"], facts={"re-attached": "0/1"})
    table = markdown_table([good, bad]).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| 1 | a \\| b | 1 | 1 |")
    assert table[2].endswith("| PASS |")
    assert "re-attached 0/1" in table[3]
    assert table[3].endswith("| FAIL |")


def test_task_logs_are_grouped_by_attempt_and_triggerer(tmp_path: Path) -> None:
    base = tmp_path / "dag_id=d" / "run_id=r" / "task_id=render"
    paths = [
        base / "map_index=0" / "attempt=1.log",
        base / "map_index=0" / "attempt=2.log",
        base / "map_index=0" / "attempt=2.log.trigger.3.log",
        base / "map_index=0" / "attempt=2.log.trigger.7.log",
        tmp_path / "dag_id=d" / "run_id=r" / "task_id=other" / "attempt=1.log",
    ]
    logs = TaskLogs.collect(paths)
    assert set(logs.worker) == {("render", 0, 1), ("render", 0, 2), ("other", -1, 1)}
    assert set(logs.trigger[("render", 0)]) == {"3", "7"}


def test_the_storm_faults_a_fifth_of_each_endpoint() -> None:
    assert pytest.approx(0.2) == 1 - (1 - storm.PER_KIND) ** storm.STATUS_FAULT_KINDS
    assert pytest.approx(0.2) == storm.GENERATE_429 + (1 - storm.GENERATE_429) * storm.GENERATE_503


def test_gateway_answers_generate_faults_itself_and_forwards_the_rest(emulator: EmulatorServer) -> None:
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


def test_bad_input_table_has_at_least_30_distinct_cases() -> None:
    assert len(BAD_INPUTS) >= 30
    assert len({case.label for case in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize(
    "case", [case for case in BAD_INPUTS if case.field != "max_credits"], ids=lambda case: case.label
)
def test_bad_input_is_refused_naming_field_and_rule(case: BadInput) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        GenerateVideoOperator(task_id="t", **case.kwargs).video_request()
    assert f"{case.field}:" in str(raised.value)
    assert case.rule in str(raised.value)


def test_the_credit_limit_case_is_a_valid_request_above_its_limit() -> None:
    (case,) = [case for case in BAD_INPUTS if case.field == "max_credits"]
    operator = GenerateVideoOperator(task_id="t", **case.kwargs)
    assert operator.max_credits is not None
    assert operator.video_request().estimate_credits() > operator.max_credits


# -- trial 9: user mistakes -------------------------------------------------------------------------------


def test_mistakes_table_has_at_least_12_distinct_cases() -> None:
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


def test_the_template_case_is_the_one_with_a_template() -> None:
    assert MISTAKES[mistakes.TEMPLATE_CASE].wrong["multi_prompt"] == "{{ params.shots }}"
    # Placeholders are replaced with str.replace: Jinja's braces stay.
    assert fill({"a": ["{{ x }} <conn>"]}, {"<conn>": "c"}) == {"a": ["{{ x }} c"]}


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


def test_a_clean_refusal_has_no_problems_and_names_its_message() -> None:
    case = MISTAKES[0]
    text = f"AirflowFailException: The HappyHorse connection 'x' {case.message} (Admin > Connections)"
    problems, named = mistakes.refusal_problems(case, _ti("failed"), ["other", text], False, mistakes.NO_RECORD)
    assert (problems, named) == ([], text)


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


def test_api_counts_of_mistakes_refused_for_free_then_paid_once_pass() -> None:
    before = _mistake_stats(1, 0, {"401": 1})
    assert mistakes.api_problems(before, _mistake_stats(4, 3, {"401": 1}), 3, {"401": 1}) == []


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
    problems = mistakes.api_problems(before, after, 3, {"401": 1})
    assert any(problem in text for text in problems), problems

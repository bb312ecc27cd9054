"""The reliability suite's own logic, without Airflow: verdicts, the table, log layout, the fault gateway and the
bad-input table. (The suite itself runs in ``test_reliability.py``.)"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.emulator import EmulatorServer
from airflow_provider_happyhorse.exceptions import InvalidRequestError
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from reliability.bad_inputs import BAD_INPUTS, BadInput
from reliability.gateway import FaultGateway, GatewayFaults
from reliability.lab import TaskLogs
from reliability.report import Row, markdown_table
from reliability.trials import storm

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

"""
Airflow DAG of trial 10: a hostile service. One mapped task per case, plus normal renders in the same run; each
task's keyword arguments (prompt, connection, output path, aspect ratio) come from the run's conf (``cases``,
written by ``reliability/trials/hostile.py``), so the DAG itself knows no case.

One retry, a second later: a refusal by rule must fail at once all the same (``AirflowFailException``), and a
try that fails otherwise must be retried without paying again (the retry re-attaches to the job).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from reliability.dagkit import EAGER_POLLING, START_DATE, VIDEO_SECONDS

with DAG(
    dag_id="rel_hostile",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    params={"count": 1, "batch": "b", "clips_dir": "", "cases": []},
    tags=["reliability"],
    doc_md=__doc__,
):

    @task(retries=0)
    def hostile_cases(params: dict[str, Any] | None = None, ti: Any = None) -> list[dict[str, Any]]:
        cases = (params or {}).get("cases")
        if not isinstance(cases, list) or not all(isinstance(case, dict) for case in cases):
            raise ValueError("the run's conf must hold 'cases', a list of keyword-argument objects")
        # Where this task runner's sitecustomize came from: the trial checks it is its egress guard.
        guard = sys.modules.get("sitecustomize")
        ti.xcom_push(key="egress_guard", value=getattr(guard, "__file__", None))
        return cases

    GenerateVideoOperator.partial(
        task_id="render",
        duration=VIDEO_SECONDS,
        sound=False,
        retries=1,
        retry_delay=timedelta(seconds=1),
        timeout=timedelta(seconds=120),
        **EAGER_POLLING,
    ).expand_kwargs(hostile_cases())

"""
Airflow DAG of trial 9: user mistakes. One mapped task per case; its keyword arguments come from the Airflow
Variable ``rel_mistakes_cases`` (a JSON list), read by the upstream task, so the trial fixes a mistake by
updating the Variable (or the connection the case names) and clearing the upstream task with its downstream.

Every mistake must fail its task at once with a message naming it, with nothing paid; after the fix, each
task is paid for exactly once and succeeds. No retries: the fix is the user's, by clearing.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Variable, task

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from reliability.dagkit import EAGER_POLLING, START_DATE
from reliability.mistakes import VARIABLE_KEY

with DAG(
    dag_id="rel_mistakes",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    # What the multi_prompt template of one case would render, if it were rendered.
    params={"count": 1, "batch": "b", "clips_dir": "", "shots": [{"prompt": "a horse"}]},
    tags=["reliability"],
    doc_md=__doc__,
):

    @task(retries=0)
    def mistake_cases() -> list[dict[str, Any]]:
        cases = Variable.get(VARIABLE_KEY, deserialize_json=True)
        if not isinstance(cases, list) or not all(isinstance(case, dict) for case in cases):
            raise ValueError(f"Variable {VARIABLE_KEY} must be a JSON list of objects")
        return cases

    GenerateVideoOperator.partial(task_id="render", retries=0, **EAGER_POLLING).expand_kwargs(mistake_cases())

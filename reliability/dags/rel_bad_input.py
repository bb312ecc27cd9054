"""Airflow DAG of trial 6: invalid parameter sets, one mapped task each; each is refused before any request."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from reliability.bad_inputs import BAD_INPUTS
from reliability.dagkit import START_DATE

with DAG(
    dag_id="rel_bad_input",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["reliability"],
    doc_md=__doc__,
):
    # Retries are allowed on purpose: a refused request must fail at once, without using them.
    GenerateVideoOperator.partial(
        task_id="invalid",
        happyhorse_conn_id="rel_bad_input",
        retries=2,
        retry_delay=timedelta(seconds=1),
    ).expand_kwargs([case.kwargs for case in BAD_INPUTS])

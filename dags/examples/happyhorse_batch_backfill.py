"""
Batch / backfill: one mapped video per row of ``prompts.csv`` (shipped beside this file), for the run's day.

Safe to point at a paid account:

- **Every clip is new.** Each row's prompt names its day (``{date}`` becomes the run's ``ds``) and its clip
  is stored under that day, so two days never pay for the same clip. (A row without ``{date}`` would buy
  the same video every day: ``load_prompts`` refuses such a file.)
- **No catchup by default.** Unpausing or triggering it renders one day, not every day since
  ``start_date``. For a backfill, ask for it: ``airflow backfill create --dag-id happyhorse_batch_backfill
  --from-date ... --to-date ...``; at most ``max_active_tis_per_dag`` renders run at once.
- **A budget for the run.** Before any render, ``plan_renders`` validates every row and sums the credit
  estimates (``airflow_provider_happyhorse.budget``); above the ``max_run_credits`` param the run fails and
  nothing is submitted. A trigger's conf may lower ``max_run_credits`` (``{"max_run_credits": 100}``) but
  not raise it: the param's schema caps it at ``BUDGET.ceiling``, so Airflow refuses to create a run whose
  conf asks for more. Raising the budget is a change to this file.
- **Never twice for one task instance.** A retry or a cleared task re-attaches to the job it already paid for.

The CSV is read by a task, not at parse time. Its path is fixed (``prompts.csv`` beside this file), not a
param: a trigger's conf cannot point the run at another file on the worker.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import DAG, AssetAlias, task
from happyhorse_example_settings import OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.budget import RunBudget
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

# Fixed here, not a param: a trigger's conf must not choose which file on the worker the run reads.
PROMPTS_FILE = Path(__file__).with_name("prompts.csv")
# Per clip and per run: each is checked before anything is paid for.
MAX_CLIP_CREDITS = 1000
# [START howto_budget_declare]
# The most a run may spend. A trigger's conf may lower max_run_credits, never raise it past 3000.
BUDGET = RunBudget("max_run_credits", ceiling=3000)
# [END howto_budget_declare]


with DAG(
    dag_id="happyhorse_batch_backfill",
    schedule="@daily",
    start_date=datetime(2026, 11, 20),
    catchup=False,
    max_active_runs=2,
    tags=["happyhorse", "example", "backfill"],
    doc_md=__doc__,
    # [START howto_budget_param]
    params={BUDGET.name: BUDGET.param()},
    # [END howto_budget_param]
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
):

    @task
    def load_prompts(ds: str | None = None) -> list[dict[str, Any]]:
        """One mapped item per row of PROMPTS_FILE, for this run's day: the operator's keyword arguments."""
        with open(PROMPTS_FILE, newline="") as handle:
            rows = list(csv.DictReader(handle))
        undated = [index for index, row in enumerate(rows) if "{date}" not in row["prompt"]]
        if undated:  # fails without retries: a retry would not change the file
            raise AirflowFailException(
                f"{PROMPTS_FILE.name}: rows {undated} have no {{date}} in their prompt, so every day would pay "
                "for the same clip. Nothing was submitted: put {date} in each prompt."
            )
        return [
            {
                "prompt": row["prompt"].replace("{date}", str(ds)),
                "duration": float(row["duration"]),
                "mode": row["mode"],
                "aspect_ratio": row["aspect_ratio"],
                "output_path": f"{OUTPUT_ROOT}/batch/{ds}/{row['slug']}.mp4",
            }
            for row in rows
        ]

    # [START howto_budget_plan]
    @task
    def plan_renders(rows: list[dict[str, Any]], params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Refuse the whole run, before any render, if a row is invalid or the run costs too much."""
        plan = BUDGET.plan_renders(rows, params)
        print(plan.summary())
        return plan.operator_arguments()

    # [END howto_budget_plan]

    # [START howto_operator_generate_video_mapped]
    GenerateVideoOperator.partial(
        task_id="render",
        max_active_tis_per_dag=4,
        max_credits=MAX_CLIP_CREDITS,
        outlets=[AssetAlias("happyhorse_clips")],
        **POLLING,
    ).expand_kwargs(plan_renders(load_prompts()))
    # [END howto_operator_generate_video_mapped]

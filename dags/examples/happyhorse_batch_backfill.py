"""
Batch / backfill: one mapped video per row of ``prompts.csv`` (shipped beside this file), for the run's day.

Safe to point at a paid account:

- **Every clip is new.** Each row's prompt names its day (``{date}`` becomes the run's ``ds``) and its clip
  is stored under that day, so two days never pay for the same clip. (A row without ``{date}`` would buy
  the same video every day: the budget task refuses such a file.)
- **No catchup by default.** Unpausing or triggering it renders one day, not every day since
  ``start_date``. For a backfill, ask for it: ``airflow backfill create --dag-id happyhorse_batch_backfill
  --from-date ... --to-date ...``; at most ``max_active_tis_per_dag`` renders run at once.
- **A budget for the run.** Before any render, ``check_budget`` validates every row and sums the credit
  estimates; above the ``max_run_credits`` param the run fails and nothing is submitted.
- **Never twice for one task instance.** A retry or a cleared task re-attaches to the job it already paid for.

The CSV is read by a task, not at parse time.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, AssetAlias, task
from happyhorse_example_settings import OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

PROMPTS_FILE = Path(__file__).with_name("prompts.csv")
# Per clip and per run: each is checked before anything is paid for.
MAX_CLIP_CREDITS = 1000
MAX_RUN_CREDITS = 3000

with DAG(
    dag_id="happyhorse_batch_backfill",
    schedule="@daily",
    start_date=datetime(2026, 11, 20),
    catchup=False,
    max_active_runs=2,
    tags=["happyhorse", "example", "backfill"],
    doc_md=__doc__,
    params={"prompts_file": str(PROMPTS_FILE), "max_run_credits": MAX_RUN_CREDITS},
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
):

    @task
    def load_prompts(params: dict | None = None, ds: str | None = None) -> list[dict]:
        """One mapped item per CSV row, for this run's day: the operator's keyword arguments."""
        with open((params or {})["prompts_file"], newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            {
                "prompt": row["prompt"].replace("{date}", str(ds)),
                "duration": float(row["duration"]),
                "mode": row["mode"],
                "aspect_ratio": row["aspect_ratio"],
                "output_path": f"{OUTPUT_ROOT}/batch/{ds}/{row['slug']}.mp4",
                "_dated": "{date}" in row["prompt"],
            }
            for row in rows
        ]

    @task
    def check_budget(rows: list[dict], params: dict | None = None) -> list[dict]:
        """Refuse the whole run, before any render, if a row is invalid, undated, or the run costs too much."""
        # Fails without retries: a retry would not change the file or the budget.
        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_happyhorse.exceptions import InvalidRequestError
        from airflow_provider_happyhorse.models import VideoRequest

        limit = float((params or {})["max_run_credits"])
        undated = [index for index, row in enumerate(rows) if not row["_dated"]]
        if undated:
            raise AirflowFailException(
                f"rows {undated} have no {{date}} in their prompt: every day would pay for the same clip"
            )
        renders = [{key: value for key, value in row.items() if key != "_dated"} for row in rows]
        total = 0.0
        for index, row in enumerate(renders):
            fields = {key: value for key, value in row.items() if key != "output_path"}
            try:
                total += VideoRequest.parse(fields).estimate_credits()
            except InvalidRequestError as error:
                raise AirflowFailException(f"row {index}: {error}") from None
        print(f"{len(renders)} videos, {total:g} credits estimated (max_run_credits {limit:g})")
        if total > limit:
            raise AirflowFailException(
                f"max_run_credits: the run's {len(renders)} videos are estimated at {total:g} credits, above "
                f"{limit:g}; nothing was submitted. Raise the max_run_credits param or trim prompts.csv."
            )
        return renders

    GenerateVideoOperator.partial(
        task_id="render",
        max_active_tis_per_dag=4,
        max_credits=MAX_CLIP_CREDITS,
        outlets=[AssetAlias("happyhorse_clips")],
        **POLLING,
    ).expand_kwargs(check_budget(load_prompts()))

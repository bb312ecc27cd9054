"""
Batch / backfill: one mapped video per prompt in ``prompts.csv`` (shipped beside this file).

Backfill-friendly: ``catchup=True`` and a ``backfill`` CLI run both create one run per day, at most
``max_active_tis_per_dag`` renders run at once (and a pool can cap them across DAGs), and a rerun or
retry of a task instance re-attaches to the job it already paid for instead of submitting again.
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

with DAG(
    dag_id="happyhorse_batch_backfill",
    schedule="@daily",
    start_date=datetime(2026, 11, 20),
    catchup=True,
    max_active_runs=2,
    tags=["happyhorse", "example", "backfill"],
    doc_md=__doc__,
    params={"prompts_file": str(PROMPTS_FILE)},
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
):

    @task
    def load_prompts(params: dict | None = None, ds: str | None = None) -> list[dict]:
        """One mapped item per CSV row: the operator's keyword arguments."""
        with open((params or {})["prompts_file"], newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            {
                "prompt": row["prompt"],
                "duration": float(row["duration"]),
                "mode": row["mode"],
                "aspect_ratio": row["aspect_ratio"],
                "output_path": f"{OUTPUT_ROOT}/batch/{ds}/{row['slug']}.mp4",
            }
            for row in rows
        ]

    GenerateVideoOperator.partial(
        task_id="render",
        max_active_tis_per_dag=4,
        max_credits=1000,
        outlets=[AssetAlias("happyhorse_clips")],
        **POLLING,
    ).expand_kwargs(load_prompts())

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
  estimates; above the ``max_run_credits`` param the run fails and nothing is submitted. A trigger's conf
  may lower ``max_run_credits`` (``{"max_run_credits": 100}``) but not raise it: the param's schema caps
  it at ``MAX_RUN_CREDITS``, so Airflow refuses to create a run whose conf asks for more. Raising the
  budget is a change to this file.
- **Never twice for one task instance.** A retry or a cleared task re-attaches to the job it already paid for.

The CSV is read by a task, not at parse time. Its path is fixed (``prompts.csv`` beside this file), not a
param: a trigger's conf cannot point the run at another file on the worker.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, AssetAlias, Param, task
from happyhorse_example_settings import OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

# Fixed here, not a param: a trigger's conf must not choose which file on the worker the run reads.
PROMPTS_FILE = Path(__file__).with_name("prompts.csv")
# Per clip and per run: each is checked before anything is paid for. A trigger's conf may lower the run's
# budget, never raise it past MAX_RUN_CREDITS (the param's schema maximum, enforced again in check_budget).
MAX_CLIP_CREDITS = 1000
MAX_RUN_CREDITS = 3000


def run_budget(value: Any) -> float:
    """The ``max_run_credits`` param as a number in [0, MAX_RUN_CREDITS], or an error naming the param.

    Airflow validates the param's schema when a run is created and again when a task starts; this is for
    whatever bypasses both (the task function called directly, an Airflow that skips the check).
    """
    try:
        if isinstance(value, bool):  # float(True) is 1.0; a JSON true is not a budget
            raise TypeError
        limit = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"max_run_credits: {value!r} is not a number") from None
    if not (math.isfinite(limit) and 0 <= limit <= MAX_RUN_CREDITS):
        raise ValueError(
            f"max_run_credits: {value!r} is outside 0 to {MAX_RUN_CREDITS}, the most this DAG allows a run to "
            "spend; raising it is a change to the DAG file, not to a trigger's conf"
        )
    return limit


with DAG(
    dag_id="happyhorse_batch_backfill",
    schedule="@daily",
    start_date=datetime(2026, 11, 20),
    catchup=False,
    max_active_runs=2,
    tags=["happyhorse", "example", "backfill"],
    doc_md=__doc__,
    params={
        "max_run_credits": Param(
            MAX_RUN_CREDITS,
            type="number",
            minimum=0,
            maximum=MAX_RUN_CREDITS,
            description=f"Most credits this run may spend (estimated before any render): at most {MAX_RUN_CREDITS}. "
            "A trigger may lower it; raising the cap is a change to the DAG file.",
        ),
    },
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
):

    @task
    def load_prompts(ds: str | None = None) -> list[dict]:
        """One mapped item per row of PROMPTS_FILE, for this run's day: the operator's keyword arguments."""
        with open(PROMPTS_FILE, newline="") as handle:
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

        try:
            limit = run_budget((params or {}).get("max_run_credits", MAX_RUN_CREDITS))
        except ValueError as error:
            raise AirflowFailException(str(error)) from None
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
                f"{limit:g}; nothing was submitted. Trim prompts.csv, or trigger with a higher max_run_credits "
                f"(at most {MAX_RUN_CREDITS:g}; more is a change to the DAG file)."
            )
        return renders

    # [START howto_operator_generate_video_mapped]
    GenerateVideoOperator.partial(
        task_id="render",
        max_active_tis_per_dag=4,
        max_credits=MAX_CLIP_CREDITS,
        outlets=[AssetAlias("happyhorse_clips")],
        **POLLING,
    ).expand_kwargs(check_budget(load_prompts()))
    # [END howto_operator_generate_video_mapped]

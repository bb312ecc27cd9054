"""
Daily content: one clip a day, its prompt templated from the run's date, stored to object storage.

The task defers while the video renders (no worker slot held); the stored clip is announced as an
asset event on the ``happyhorse_clips`` alias, which ``happyhorse_publish`` is scheduled on.

One clip a day, made once: ``not_made_yet`` looks for the day's clip (``daily/<ds>.mp4``) before
anything is paid for, so a second run on the same day (say, a manual one) pays nothing and never
overwrites the clip the first run made; runs do not overlap (``max_active_runs=1``). To render a day
again, delete its clip. A retry or a cleared task of the same run re-attaches to its job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetAlias, ObjectStoragePath, task
from happyhorse_example_settings import OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_daily_content",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["happyhorse", "example"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
):

    @task.short_circuit
    def not_made_yet(ds: str | None = None) -> bool:
        clip = ObjectStoragePath(f"{OUTPUT_ROOT}/daily/{ds}.mp4")
        if clip.exists():
            print(f"{clip} exists: this day's clip is made; nothing is rendered (delete it to render the day again)")
            return False
        return True

    not_made_yet() >> GenerateVideoOperator(
        task_id="daily_clip",
        prompt=(
            "A calm morning news intro for {{ macros.ds_format(ds, '%Y-%m-%d', '%A %d %B %Y') }}: "
            "sunrise over a city skyline, warm light, slow dolly-in, soft ambient music."
        ),
        mode="std",
        duration=5,
        aspect_ratio="16:9",
        sound=True,
        max_credits=400,
        output_path=f"{OUTPUT_ROOT}/daily/{{{{ ds }}}}.mp4",
        outlets=[AssetAlias("happyhorse_clips")],
        **POLLING,
    )

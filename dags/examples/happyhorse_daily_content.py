"""
Daily content: one clip a day, its prompt templated from the run's date, stored to object storage.

The task defers while the video renders (no worker slot held); the stored clip is announced as an
asset event on the ``happyhorse_clips`` alias, which ``happyhorse_publish`` is scheduled on.

One clip a day, made once: the clip is stored with a record of the request that made it, and before
anything is paid for the operator looks at the day's clip (``daily/<ds>.mp4``; ``if_exists="skip"``, the
default). A second run on the same day (say, a manual one) pays nothing, returns the recorded result and
never overwrites the clip; a changed prompt renders anew. Runs do not overlap (``max_active_runs=1``). To
render a day again, delete its clip or set ``if_exists="replace"``. A retry or a cleared task of the same
run re-attaches to its job. The stored clip is checked to be the video asked for (5 s, 16:9, with sound)
before it is moved into place, and gets a poster frame beside it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetAlias
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
    # [START howto_operator_generate_video]
    GenerateVideoOperator(
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
        if_exists="skip",  # the default, spelled out: a day's clip already kept for this request pays nothing
        outlets=[AssetAlias("happyhorse_clips")],
        **POLLING,
    )
    # [END howto_operator_generate_video]

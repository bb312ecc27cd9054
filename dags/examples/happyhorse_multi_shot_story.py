"""A multi-shot story: three shots whose durations add up to the video's, from one first frame."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, AssetAlias
from happyhorse_example_settings import IMAGE_BASE_URL, OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_multi_shot_story",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example"],
    doc_md=__doc__,
    params={"hero": "a red fox"},
):
    # [START howto_operator_multi_shot]
    GenerateVideoOperator(
        task_id="story",
        multi_shots=True,
        multi_prompt=[
            {"prompt": "Wide shot: {{ params.hero }} at the edge of a snowy forest at dusk", "duration": 4},
            {"prompt": "Close-up: {{ params.hero }} hears something and turns its head", "duration": 3},
            {"prompt": "Tracking shot: {{ params.hero }} bounds into the trees, snow flying", "duration": 3},
        ],
        image_urls=[f"{IMAGE_BASE_URL}/1280x720.png"],
        duration=10,
        mode="pro",
        sound=True,
        outlets=[AssetAlias("happyhorse_clips")],  # published by happyhorse_publish
        output_path=f"{OUTPUT_ROOT}/stories/{{{{ run_id | replace(':', '_') }}}}.mp4",
        **POLLING,
    )
    # [END howto_operator_multi_shot]

"""Image-to-video: animate from a first frame to a last frame (the video takes the images' aspect)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, AssetAlias
from happyhorse_example_settings import IMAGE_BASE_URL, OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_image_to_video",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example"],
    doc_md=__doc__,
):
    # [START howto_operator_image_to_video]
    GenerateVideoOperator(
        task_id="first_to_last_frame",
        prompt="The product box opens slowly and the sneaker rises, rotating, studio light.",
        image_urls=[f"{IMAGE_BASE_URL}/720x1280.png", f"{IMAGE_BASE_URL}/720x1280.png?frame=last"],
        duration=5,
        sound=False,
        outlets=[AssetAlias("happyhorse_clips")],  # published by happyhorse_publish
        output_path=f"{OUTPUT_ROOT}/image_to_video/{{{{ run_id | replace(':', '_') }}}}.mp4",
        **POLLING,
    )
    # [END howto_operator_image_to_video]

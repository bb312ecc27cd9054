"""
Reference-to-video (Alibaba Cloud Model Studio): a character sheet of 1-9 reference images and a prompt
that names each image by its place, ``character1``, ``character2``...: the clip shows those characters.

Reference-to-video is offered by the DashScope dialect only (``happyhorse-1.0-r2v``); the task uses the
``happyhorse_dashscope`` connection. A reference image's shorter side must be at least 400 px: the service
refuses a smaller one (``InvalidParameter``) and nothing is billed. Not scheduled: trigger it (one 5 s
clip at 720P).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from happyhorse_example_settings import IMAGE_BASE_URL, OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_reference_to_video",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example", "dashscope"],
    doc_md=__doc__,
):
    # [START howto_dashscope_reference_to_video]
    GenerateVideoOperator(
        task_id="character_sheet",
        happyhorse_conn_id="happyhorse_dashscope",
        task="reference",
        # The character sheet: character1 is the first image, character2 the second (1 to 9 images).
        image_urls=[f"{IMAGE_BASE_URL}/720x1280.png?sheet=rider", f"{IMAGE_BASE_URL}/720x720.png?sheet=horse"],
        prompt="character1 rides character2 along a beach at sunset, slow tracking shot, warm light.",
        aspect_ratio="9:16",
        resolution="720P",
        duration=5,
        output_path=f"{OUTPUT_ROOT}/reference/{{{{ run_id | replace(':', '_') }}}}.mp4",
        **POLLING,
    )
    # [END howto_dashscope_reference_to_video]

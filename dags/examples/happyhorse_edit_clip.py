"""
Editing yesterday's clip (Alibaba Cloud Model Studio): a source video plus an instruction.

Scheduled on the ``happyhorse_dashscope_clips`` asset alias: when ``happyhorse_drafts_then_final`` stores
its 1080P final, this DAG edits that clip. The source is the clip's ``video_url``, which the asset event
carries (the service reads the video from a URL, not from your storage); Model Studio keeps a clip's URL 24
hours, so the edit runs when the clip lands. The edit lasts as long as its source (at most 15 s) and takes no
``duration``; ``audio_setting="origin"`` keeps the source's sound.

Video edit is offered by the DashScope dialect only (``happyhorse-1.0-video-edit``); the task uses the
``happyhorse_dashscope`` connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, AssetAlias, task
from happyhorse_example_settings import OUTPUT_ROOT, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

with DAG(
    dag_id="happyhorse_edit_clip",
    schedule=[AssetAlias("happyhorse_dashscope_clips")],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example", "dashscope"],
    doc_md=__doc__,
):
    # [START howto_dashscope_edit]
    @task
    def clip_to_edit(triggering_asset_events: Any = None) -> str:
        """The newest clip's URL from the asset events that started this run."""
        events = [event for events in (triggering_asset_events or {}).values() for event in events]
        urls = [event.extra["video_url"] for event in events if event.extra.get("video_url")]
        if not urls:
            raise ValueError(
                "No asset event with a video_url started this run: it edits the clip happyhorse_drafts_then_final "
                "stores; trigger that DAG instead of this one"
            )
        return str(urls[-1])

    GenerateVideoOperator(
        task_id="edit",
        happyhorse_conn_id="happyhorse_dashscope",
        task="edit",
        source_video=clip_to_edit(),
        prompt="Turn the scene into a moonlit night, keep the horse and the camera move.",
        audio_setting="origin",
        output_path=f"{OUTPUT_ROOT}/edits/{{{{ run_id | replace(':', '_') }}}}.mp4",
        **POLLING,
    )
    # [END howto_dashscope_edit]

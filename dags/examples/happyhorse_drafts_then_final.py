"""
720P drafts, then a 1080P final of the chosen one (Alibaba Cloud Model Studio).

A few cheap 720P drafts of one prompt, each with its own seed; the chosen draft's seed is rendered again at
1080P, so the final is the draft's shot at full resolution. The ``pick`` param chooses the draft (its index
in ``SEEDS``; the first by default): trigger the DAG once to see the drafts, then trigger it again with
``{"pick": 2}`` to keep the third. A draft already stored for the same request is not paid for again
(``if_exists="skip"``, the default), so the second run pays only for the final.

``resolution`` and ``seed`` are offered by the DashScope dialect only; the tasks use the
``happyhorse_dashscope`` connection. The final clip is announced on the ``happyhorse_dashscope_clips``
asset alias, which ``happyhorse_edit_clip`` is scheduled on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, AssetAlias, Param, task
from happyhorse_example_settings import FIRST_POLL_AFTER, OUTPUT_ROOT, POLL_INTERVAL, POLLING

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

PROMPT = "A white horse gallops through shallow surf at dawn, spray in the low sun, camera tracking alongside."
SEEDS = [11, 42, 2026]

with DAG(
    dag_id="happyhorse_drafts_then_final",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example", "dashscope"],
    doc_md=__doc__,
    params={
        "pick": Param(
            0,
            type="integer",
            minimum=0,
            maximum=len(SEEDS) - 1,
            description="Which draft to render at 1080P: its index in SEEDS (0 is the first).",
        )
    },
):
    # [START howto_dashscope_drafts]
    drafts = GenerateVideoOperator.partial(
        task_id="draft",
        happyhorse_conn_id="happyhorse_dashscope",
        prompt=PROMPT,
        resolution="720P",
        duration=5,
        # One file per seed: a later run finds the same drafts and pays nothing for them.
        output_path=f"{OUTPUT_ROOT}/drafts/{{{{ ds }}}}/seed-{{{{ ti.map_index }}}}.mp4",
        **POLLING,
    ).expand(seed=SEEDS)
    # [END howto_dashscope_drafts]

    # [START howto_dashscope_final]
    @task.happyhorse(
        happyhorse_conn_id="happyhorse_dashscope",
        output_path=f"{OUTPUT_ROOT}/final/{{{{ ds }}}}.mp4",
        outlets=[AssetAlias("happyhorse_dashscope_clips")],  # happyhorse_edit_clip edits it
        first_poll_after=FIRST_POLL_AFTER,
        poll_interval=POLL_INTERVAL,
    )
    def final(draft_results: list[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The chosen draft's request at 1080P: the same prompt, duration and seed."""
        chosen = list(draft_results)[int((params or {}).get("pick", 0))]
        request = dict(chosen["request"])
        print(f"Rendering draft {chosen['job_id']} (seed {request['seed']}) again at 1080P")
        return {key: request[key] for key in ("prompt", "duration", "aspect_ratio", "seed")} | {"resolution": "1080P"}

    final(drafts.output)
    # [END howto_dashscope_final]

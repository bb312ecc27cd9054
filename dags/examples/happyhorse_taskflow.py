"""
TaskFlow: ``@task.happyhorse`` renders the request a Python function returns, one mapped clip per prompt.

The function builds the request (here from its prompt and the run's day); everything after it is
``GenerateVideoOperator``'s: the request is validated and checked against ``max_credits`` before
anything is paid for, the clip is rendered in the triggerer, stored under ``output_path`` and verified,
and a retry re-attaches to the job it already paid for. Not scheduled: trigger it (3 clips of 4 s, no
sound, std: 480 credits a run).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task
from happyhorse_example_settings import FIRST_POLL_AFTER, OUTPUT_ROOT, POLL_INTERVAL

PROMPTS = [
    "A horse grazing on a misty hillside at sunrise",
    "A foal taking its first steps in a straw-filled stable",
    "Wild horses crossing a shallow river, water spraying",
]

with DAG(
    dag_id="happyhorse_taskflow",
    schedule=None,
    start_date=datetime(2026, 11, 20),
    catchup=False,
    tags=["happyhorse", "example", "taskflow"],
    doc_md=__doc__,
):
    # [START howto_taskflow_decorator]
    @task.happyhorse(
        output_path=OUTPUT_ROOT + "/taskflow/{{ ds }}/clip-{{ ti.map_index }}.mp4",
        max_credits=200,
        max_active_tis_per_dag=3,
        first_poll_after=FIRST_POLL_AFTER,
        poll_interval=POLL_INTERVAL,
    )
    def render(prompt: str, ds: str | None = None) -> dict[str, Any]:
        """The request for one prompt: GenerateVideoOperator's request arguments."""
        return {"prompt": f"{prompt}; title card: {ds}", "duration": 4, "sound": False, "aspect_ratio": "16:9"}

    # [END howto_taskflow_decorator]

    # [START howto_taskflow_expand]
    render.expand(prompt=PROMPTS)
    # [END howto_taskflow_expand]

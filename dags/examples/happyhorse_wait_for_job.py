"""
Waiting for a job made elsewhere: trigger this DAG with the job id of a render submitted by another DAG or
tool (``{"job_id": "..."}``). ``HappyHorseJobSensor`` waits for it in the triggerer (no worker slot held),
then keeps the clip the way ``GenerateVideoOperator`` does: downloaded, probed, with a poster and a record
beside it, under ``received/<job id>.mp4``. It pays for nothing: it only polls the job's status.

The job id is a param whose schema is the provider's job id rule, so a run whose conf names anything else
(a path, say) is refused by Airflow when it is created; the sensor checks it again before waiting.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param
from happyhorse_example_settings import OUTPUT_ROOT

from airflow_provider_happyhorse.sensors.happyhorse import HappyHorseJobSensor

with DAG(
    dag_id="happyhorse_wait_for_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example"],
    doc_md=__doc__,
    params={
        "job_id": Param(
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
            description="The HappyHorse job id (its task_id) to wait for.",
        )
    },
):
    # [START howto_sensor_wait_for_job]
    HappyHorseJobSensor(
        task_id="wait_for_clip",
        job_id="{{ params.job_id }}",
        output_path=f"{OUTPUT_ROOT}/received/{{{{ params.job_id }}}}.mp4",
        poke_interval=15,  # the shortest wait between polls, in seconds
        max_poll_interval=120,  # the longest, while deferred
        timeout=3600,  # give up an hour after the wait began
    )
    # [END howto_sensor_wait_for_job]

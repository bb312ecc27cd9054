"""Two deferrals from the standard provider, then a Python task that returns a value.

Next to them, a mapped task with three map indexes.

Both sensors defer until a few seconds after they started, so they always defer:
``wait`` then finishes inside the triggerer (one worker start), ``wait_and_resume`` resumes
on a worker (two worker starts). ``WaitSensor(deferrable=True)`` would be the obvious pick
for the first, but it defines no ``execute_complete`` and ``airflow dags test`` (which ignores
``end_from_trigger``) fails it with AttributeError.

The wait is 10 s, not 2, on purpose: a task supervisor can linger up to
``[workers] min_heartbeat_interval`` (5 s) after its task runner deferred, and if the trigger
fires and the scheduler re-queues the task before the lingering supervisor reports, Airflow
3.3.2's scheduler takes the late report for a task "killed externally" and fails it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG, task

WAIT_SECONDS = 10
TARGET_TIME = f"{{{{ (ti.start_date + macros.timedelta(seconds={WAIT_SECONDS})).isoformat() }}}}"

with DAG(
    dag_id="harness_smoke",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["harness"],
):
    wait = DateTimeSensorAsync(task_id="wait", target_time=TARGET_TIME, end_from_trigger=True)
    wait_and_resume = DateTimeSensorAsync(task_id="wait_and_resume", target_time=TARGET_TIME)

    @task
    def answer() -> dict[str, int]:
        return {"answer": 42}

    [wait, wait_and_resume] >> answer()

    @task
    def double(number: int) -> int:
        return 2 * number

    double.expand(number=[1, 2, 3])

"""
What the HappyHorse view's endpoint tests share, whichever auth manager they run on (Airflow's SimpleAuthManager
in tests/integration/test_ui_api.py, FAB's in tests/distributed/test_ui_fab.py): result XComs made by real
`airflow dags test` runs against the emulator in the session's metadata DB, a client of the in-process api-server,
and a render put in flight the way the triggerer holds one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from happyhorse_emulator import EmulatorServer
from support import airflow_cli

DAY = "2026-03-01"


def airflow_env(dags: Path, emulator: EmulatorServer, output: Path, **extra: str) -> dict[str, str]:
    """The environment of `airflow` commands on this session's AIRFLOW_HOME (tests/conftest.py) and these DAGs."""
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    return {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
        "HAPPYHORSE_IT_OUTPUT": f"file://{output}",
        **extra,
    }


def airflow(env: dict[str, str], *args: str) -> str:
    """One real `airflow` command; its output's tail in the failure when it fails."""
    run = airflow_cli.airflow(*args, env=env)
    assert run.returncode == 0, (args, (run.stdout + run.stderr)[-3000:])
    return run.stdout


def run_dags(env: dict[str, str], dag_ids: Iterable[str]) -> None:
    for dag_id in dag_ids:
        airflow(env, "dags", "test", dag_id, DAY)


def run_ids(dag_ids: Iterable[str]) -> dict[str, str]:
    """Each DAG's one run, read from the metadata DB (not through an auth manager that may hide it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {
            dag_id: session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)).one() for dag_id in dag_ids
        }


@dataclass
class Gallery:
    client: Any
    output: Path
    tokens: dict[str, str]
    run_ids: dict[str, str]
    default_user: str

    def key(self, dag_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return {"dag_id": dag_id, "run_id": self.run_ids[dag_id], "task_id": task_id, "map_index": map_index}

    def get(self, path: str, user: str | None = "", **kwargs: Any) -> Any:
        """A view route as ``user`` (a bearer token of theirs), ``default_user`` when unnamed, anonymous for None."""
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user or self.default_user]}"
        return self.client.get(f"/happyhorse{path}", headers=headers, **kwargs)


@contextmanager
def render_in_flight(dag_id: str, job_id: str, *, earlier_shape: bool = False) -> Iterator[None]:
    """
    A task instance of ``dag_id`` deferred on our trigger while inside, as it is in a running render; with
    ``earlier_shape`` its trigger row holds the flat kwargs the release before the render record wrote.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_happyhorse.core.record import RenderRecord

    kwargs: dict[str, object] = {
        "job_id": job_id,
        "happyhorse_conn_id": "happyhorse_default",
        "deadline": "2026-03-01T01:00:00+00:00",
        "submitted_at": "2026-03-01T00:00:00+00:00",
        "first_poll_after": 50.0,
        "min_poll_interval": 2.0,
        "max_poll_interval": 120.0,
        # As the operator defers: the known result carries the request (a 5 s std clip with sound: 42 s usually).
        "result": {
            "job_id": job_id,
            "status": "IN_PROGRESS",
            "video_url": None,
            "request": {"model": "happyhorse-1.0/video", "prompt": "a private clip", "mode": "std", "duration": 5},
        },
        "end_task_on_success": True,
    }
    if not earlier_shape:
        record = RenderRecord.from_trigger_kwargs(kwargs)
        kwargs = {"record": record.model_dump(mode="json"), "happyhorse_conn_id": "happyhorse_default"}
    with create_session() as session:
        trigger = Trigger(
            classpath="airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger", kwargs=kwargs
        )
        session.add(trigger)
        session.flush()
        ti = session.scalar(select(TaskInstance).where(TaskInstance.dag_id == dag_id))
        assert ti is not None
        previous = ti.state
        ti.state, ti.trigger_id = "deferred", trigger.id
    try:
        yield
    finally:
        with create_session() as session:
            ti = session.scalar(select(TaskInstance).where(TaskInstance.dag_id == dag_id))
            assert ti is not None
            ti.state, ti.trigger_id = previous, None

"""
An auth manager with per-DAG read permissions, for the HappyHorse view's access tests: Airflow's
SimpleAuthManager (its users, roles and tokens), where a user named in ``DAGS_BY_USER`` may read only
those DAGs, and a user in ``NO_XCOM_READ`` may read every DAG but none of its XComs. The view asks it the
questions Airflow's own routes ask (``get_authorized_dag_ids``, ``is_authorized_dag``, with
``DagAccessEntity.XCOM`` for XComs), so the view's filtering is tested, not this class.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

DAGS_BY_USER: dict[str, set[str]] = {"outsider": {"happyhorse_it_videos"}}
NO_XCOM_READ: set[str] = {"dag_reader"}


class DagScopedAuthManager(SimpleAuthManager):
    def _allowed(self, user: Any, dag_id: str | None) -> bool:
        scoped = DAGS_BY_USER.get(user.get_name())
        return scoped is None or dag_id is None or dag_id in scoped

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if access_entity == DagAccessEntity.XCOM and user.get_name() in NO_XCOM_READ:
            return False
        dag_id = getattr(details, "id", None)
        return self._allowed(user, dag_id) and super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )

    def get_authorized_dag_ids(self, *, user: Any, method: Any = "GET", session: Any = None) -> set[str]:
        kwargs = {} if session is None else {"session": session}
        dags = super().get_authorized_dag_ids(user=user, method=method, **kwargs)
        return {dag_id for dag_id in dags if self._allowed(user, dag_id)}

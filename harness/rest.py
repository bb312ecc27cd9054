"""A client of Airflow's public REST API (``/api/v2``): DAGs, import errors, DAG runs, task instances, XComs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from harness.common import ClusterError, ClusterTimeout, TaskKey, parse_api_time

FINISHED_RUN_STATES = frozenset({"success", "failed"})


class ApiError(ClusterError):
    """The REST API answered with a status outside 2xx."""

    def __init__(self, method: str, url: str, status_code: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status_code}: {body[:2000]}")
        self.method = method
        self.url = url
        self.status_code = status_code
        self.body = body


@dataclass(frozen=True)
class TaskInstanceInfo:
    """A task instance as reported by the REST API."""

    id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.dag_id, self.run_id, self.task_id, self.map_index)


@dataclass(frozen=True)
class ImportErrorInfo:
    """A DAG file the dag-processor could not import."""

    filename: str
    bundle_name: str | None
    stack_trace: str


def _seg(value: str) -> str:
    """One URL path segment; run ids carry ``+`` and ``:``."""
    return quote(value, safe="")


def _ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances/{_seg(task_id)}"


class RestClient:
    """The REST API of the api-server at ``base_url`` (``http://host:port``).

    :param api_login: ``(username, password)`` when the API needs a token (``[core]
        simple_auth_manager_all_admins`` off): :attr:`client` then gets one from ``POST /auth/token`` and sends it
        as a Bearer header. ``None``: no auth (every user is an admin).
    """

    def __init__(self, base_url: str, api_login: tuple[str, str] | None = None) -> None:
        self.base_url = base_url
        self.api_login = api_login
        self._client: httpx.Client | None = None

    @property
    def api_url(self) -> str:
        """Base URL of the public REST API (``.../api/v2``)."""
        return f"{self.base_url}/api/v2"

    @property
    def client(self) -> httpx.Client:
        """An httpx client bound to :attr:`api_url` (no auth needed: all users are admins, unless
        :attr:`api_login` is set: then it carries that user's token)."""
        if self._client is None:
            headers = {}
            if self.api_login is not None:
                username, password = self.api_login
                url = f"{self.base_url}/auth/token"
                response = httpx.post(url, json={"username": username, "password": password}, timeout=30)
                if not response.is_success:
                    raise ApiError("POST", url, response.status_code, response.text)
                headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            self._client = httpx.Client(base_url=self.api_url, timeout=30, headers=headers)
        return self._client

    def close(self) -> None:
        """Close the httpx client (the next call opens, and logs in with, a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``path`` relative to ``/api/v2``) and return the decoded JSON."""
        response = self.client.request(method, path, **kwargs)
        if not response.is_success:
            raise ApiError(method, str(response.request.url), response.status_code, response.text)
        return response.json() if response.content else None

    def import_errors(self) -> list[ImportErrorInfo]:
        """Current DAG import errors."""
        body = self.api("GET", "/importErrors", params={"limit": 100})
        return [
            ImportErrorInfo(item["filename"], item.get("bundle_name"), item.get("stack_trace", ""))
            for item in body["import_errors"]
        ]

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until ``dag_id`` is parsed, active and its file has no import error.

        Returns the DAG as the REST API describes it.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag: dict[str, Any] = self.api("GET", f"/dags/{_seg(dag_id)}")
            except ApiError as err:
                if err.status_code != 404:
                    raise
            else:
                errors = [e for e in self.import_errors() if dag.get("relative_fileloc") == e.filename]
                if errors:
                    raise ClusterError(f"{dag_id}'s file has import errors: {errors}")
                if not dag.get("is_stale"):
                    return dag
            if time.monotonic() > deadline:
                raise ClusterTimeout(f"DAG {dag_id} not parsed after {timeout}s; import errors: {self.import_errors()}")
            time.sleep(0.5)

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | None = None,
        *,
        run_id: str | None = None,
    ) -> str:
        """Create a manual DAG run and return its run id."""
        body: dict[str, Any] = {
            "logical_date": logical_date.isoformat() if logical_date else None,
            "conf": dict(conf or {}),
        }
        if run_id is not None:
            body["dag_run_id"] = run_id
        created = self.api("POST", f"/dags/{_seg(dag_id)}/dagRuns", json=body)
        return str(created["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}")
        return run

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120.0, poll: float = 0.5) -> str:
        """Wait until the run is ``success`` or ``failed`` and return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in FINISHED_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                tis = [(ti.task_id, ti.map_index, ti.state) for ti in self.task_instances(dag_id, run_id)]
                raise ClusterTimeout(f"run {dag_id}/{run_id} still {state} after {timeout}s; tasks: {tis}")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceInfo]:
        """Every task instance of a run, mapped ones included, ordered by task and map index."""
        found: list[TaskInstanceInfo] = []
        while True:
            page = self.api(
                "GET",
                f"/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances",
                params={"limit": 100, "offset": len(found), "order_by": "id"},
            )
            items = page["task_instances"]
            found.extend(
                TaskInstanceInfo(
                    id=item["id"],
                    dag_id=item["dag_id"],
                    run_id=item["dag_run_id"],
                    task_id=item["task_id"],
                    map_index=item["map_index"],
                    state=item.get("state"),
                    try_number=item.get("try_number", 0),
                    start_date=parse_api_time(item.get("start_date")),
                    end_date=parse_api_time(item.get("end_date")),
                    duration=item.get("duration"),
                )
                for item in items
            )
            if not items or len(found) >= page["total_entries"]:
                return sorted(found, key=lambda ti: (ti.task_id, ti.map_index))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """One XCom value as stored (plain JSON values come back as themselves)."""
        entry = self.api(
            "GET",
            f"{_ti_path(dag_id, run_id, task_id)}/xcomEntries/{_seg(key)}",
            params={"map_index": map_index},
        )
        return entry["value"]

    def xcoms(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """Every XCom of one task instance, by key."""
        listing = self.api(
            "GET",
            f"{_ti_path(dag_id, run_id, task_id)}/xcomEntries",
            params={"map_index": map_index, "limit": 100},
        )
        return {
            entry["key"]: self.xcom(dag_id, run_id, task_id, entry["key"], map_index)
            for entry in listing["xcom_entries"]
        }

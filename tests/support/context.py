"""Doubles of what Airflow hands a task: the task state store and a task instance that takes XComs."""

from __future__ import annotations

from typing import Any


class DictStore:
    """A task state store double with the real accessor's get/set/delete."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.retentions: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        self.values[key] = value
        self.retentions[key] = retention

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeTI:
    dag_id = "daily"
    run_id = "scheduled__2026-11-01T00:00:00+00:00"
    task_id = "video"
    map_index = -1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def make_context(store: DictStore | None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": FakeTI()}
    if store is not None:
        context["task_state_store"] = store
    return context

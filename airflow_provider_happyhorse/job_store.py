"""
The submitted job, remembered across tries of one task instance in Airflow's task state store
(Airflow 3.3+; XCom is cleared before every retry, the task state store is not).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from airflow_provider_happyhorse.core.record import RenderRecord

if TYPE_CHECKING:
    from collections.abc import Mapping


class StateStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, *, retention: Any = None) -> None: ...

    def delete(self, key: str) -> None: ...


_warned_no_store = False


class JobRecordStore:
    key = "happyhorse_job"

    def __init__(self, store: StateStore | None) -> None:
        self._store = store

    @classmethod
    def from_context(cls, context: Mapping[str, Any], log: logging.Logger | Any) -> JobRecordStore:
        global _warned_no_store
        store = context.get("task_state_store")
        if store is None and not _warned_no_store:
            _warned_no_store = True
            log.warning(
                "This Airflow has no task state store (it arrived in 3.3): a retry of this task cannot "
                "re-attach to a job an earlier try submitted, and may pay for it again."
            )
        return cls(store)

    def load(self) -> RenderRecord | None:
        """The record an earlier try kept (one written by an earlier release too), or None."""
        if self._store is None:
            return None
        raw = self._store.get(self.key)
        if not isinstance(raw, dict) or "fingerprint" not in raw:
            return None
        try:
            return RenderRecord.model_validate(raw)
        except ValidationError:
            return None

    def save(self, record: RenderRecord) -> None:
        if self._store is None:
            return
        self._store.set(self.key, record.model_dump(mode="json"), retention=_never_expire())

    def delete(self) -> None:
        if self._store is not None:
            self._store.delete(self.key)


def forget_instructions(ti: Any) -> str:
    """The way out of a refusal: delete this task instance's job record, then clear the task."""
    map_index = getattr(ti, "map_index", -1)
    command = f"happyhorse-jobs forget --dag-id {ti.dag_id} --run-id {ti.run_id} --task-id {ti.task_id}"
    if map_index is not None and map_index >= 0:
        command += f" --map-index {map_index}"
    return (
        f"delete the task state store key {JobRecordStore.key!r} of this task instance (in the UI: the task "
        f"instance's Task State Store tab; or run `{command}`), then clear the task"
    )


def _never_expire() -> Any:
    try:
        from airflow.sdk.execution_time.context import NEVER_EXPIRE
    except ImportError:  # before 3.3 (no task state store in a real task): the store's default retention
        return None
    return NEVER_EXPIRE

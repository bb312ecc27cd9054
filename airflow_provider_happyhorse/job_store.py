"""
The submitted job, remembered across tries of one task instance in Airflow's task state store
(Airflow 3.3+; XCom is cleared before every retry, the task state store is not).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_happyhorse.models import JobEvent
from airflow_provider_happyhorse.storage import StoredClip

if TYPE_CHECKING:
    from collections.abc import Mapping


class StateStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, *, retention: Any = None) -> None: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class JobRecord:
    """``job_id`` is None between sending a submission and learning its id."""

    fingerprint: str
    submitted_at: str
    job_id: str | None
    finished: JobEvent | None = None  # known to this try only (never stored)
    stored: StoredClip | None = None

    def with_job_id(self, job_id: str) -> JobRecord:
        return replace(self, job_id=job_id)

    def with_finished(self, event: JobEvent) -> JobRecord:
        return replace(self, finished=event)

    def with_stored(self, stored: StoredClip) -> JobRecord:
        return replace(self, stored=stored)


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

    def load(self) -> JobRecord | None:
        if self._store is None:
            return None
        raw = self._store.get(self.key)
        if not isinstance(raw, dict) or "fingerprint" not in raw:
            return None
        stored = raw.get("stored")
        return JobRecord(
            fingerprint=raw["fingerprint"],
            submitted_at=raw["submitted_at"],
            job_id=raw.get("job_id"),
            stored=StoredClip.from_dict(stored) if isinstance(stored, dict) else None,
        )

    def save(self, record: JobRecord) -> None:
        if self._store is None:
            return
        value = {k: v for k, v in asdict(record).items() if k not in ("finished", "stored")}
        if record.stored is not None:
            value["stored"] = record.stored.as_dict()
        self._store.set(self.key, value, retention=_never_expire())

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

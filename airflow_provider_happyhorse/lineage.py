"""
OpenLineage for a finished video task: the stored clip as the output dataset, and the job as one run facet
(``happyhorse``: job id, model, mode, duration, estimated cost) whose schema is ``FACET_SCHEMA_URL``.
Nothing here imports OpenLineage unless it is installed and asked for (DAG files import the operator).

Where Airflow calls it: the OpenLineage provider's listener asks a task that finished on a worker for
``get_openlineage_facets_on_complete`` (with ``output_path``, the worker stores the clip and finishes the
task). A task that the triggerer ends gets no such call: Airflow 3.3.2 marks it successful in
``airflow/models/trigger.py`` (``handle_event_submit`` for a ``BaseTaskEndEvent``: ``set_state``, no
listener hook), so the OpenLineage provider emits only the START it sent when the task began on a worker
(docs/howto/openlineage.md).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from airflow_provider_happyhorse.models import MODEL_ID

if TYPE_CHECKING:
    from airflow_provider_happyhorse.core.record import RenderRecord

# The facet's schema (docs/howto/openlineage.md gives its fields), named here once: the facet class is its
# only user, and every event carries it as the facet's _schemaURL.
FACET_SCHEMA_URL = "urn:airflow-provider-happyhorse:openlineage:HappyHorseRunFacet:1-0-0"
FACET_NAME = "happyhorse"


@functools.cache
def run_facet_class() -> Any:
    """The ``happyhorse`` run facet class, made once per process (None without OpenLineage's client)."""
    try:
        import attrs
        from airflow.providers.common.compat.openlineage.facet import RunFacet
    except ImportError:
        return None

    @attrs.define
    class HappyHorseRunFacet(RunFacet):
        """
        One HappyHorse job: its id, model, mode, duration (seconds of video) and estimate: in credits
        (happyhorse.app), or ``cost_estimate`` in ``cost_unit`` (a DashScope connection's currency).
        """

        job_id: str
        model: str
        mode: str | None = None
        duration: float | None = None
        credits_estimate: float | None = None
        cost_estimate: float | None = None
        cost_unit: str | None = None

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA_URL

    return HappyHorseRunFacet


def run_facets(record: RenderRecord) -> dict[str, Any]:
    """The run facets of a finished render: the job as ``happyhorse`` and as an external query."""
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet

    request = record.request
    job_id = record.job_id or ""
    facet = run_facet_class()(
        job_id=job_id,
        model=MODEL_ID if request is None else request.model,
        mode=None if request is None else request.mode,
        duration=None if request is None else request.duration,
        credits_estimate=record.credits_estimate,
        # Only for money: a facet in credits stays as earlier releases wrote it.
        cost_estimate=None if record.cost is None else record.cost.amount,
        cost_unit=None if record.cost is None else record.cost.unit,
    )
    return {
        "externalQuery": ExternalQueryRunFacet(externalQueryId=job_id, source="happyhorse"),
        FACET_NAME: facet,
    }


def clip_dataset(stored_path: str) -> Any:
    """The stored clip as an OpenLineage dataset: ``file`` or ``scheme://bucket`` and the path in it."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, _, name = str(stored_path).partition("://")
    if namespace != "file":
        bucket, _, key = name.partition("/")
        namespace, name = f"{namespace}://{bucket}", key
    return Dataset(namespace=namespace, name=name)


def operator_lineage(record: RenderRecord | None) -> Any:
    """The stored clip as the output dataset, the job as run facets; None without OpenLineage."""
    if record is None or run_facet_class() is None:
        return None
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    outputs = [] if record.stored is None else [clip_dataset(record.stored.path)]
    return OperatorLineage(outputs=outputs, run_facets=run_facets(record))

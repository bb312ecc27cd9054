"""OpenLineage facets for a finished video task; nothing here runs without the OpenLineage provider."""

from __future__ import annotations

from typing import Any


def operator_lineage(result: dict[str, Any] | None) -> Any:
    """The stored clip as the output dataset, the job id and model as run facets; None without OpenLineage."""
    if not result:
        return None
    try:
        import attrs
        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            ExternalQueryRunFacet,
            RunFacet,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None

    @attrs.define
    class HappyHorseRunFacet(RunFacet):
        job_id: str
        model: str
        mode: str | None = None
        duration: float | None = None
        credits_estimate: float | None = None

    request = result.get("request") or {}
    outputs = []
    if stored := result.get("stored_path"):
        namespace, _, name = str(stored).partition("://")
        if namespace != "file":
            bucket, _, key = name.partition("/")
            namespace, name = f"{namespace}://{bucket}", key
        outputs.append(Dataset(namespace=namespace, name=name))
    return OperatorLineage(
        outputs=outputs,
        run_facets={
            "externalQuery": ExternalQueryRunFacet(externalQueryId=result["job_id"], source="happyhorse"),
            "happyhorse": HappyHorseRunFacet(
                job_id=result["job_id"],
                model=request.get("model", "happyhorse-1.0/video"),
                mode=request.get("mode"),
                duration=request.get("duration"),
                credits_estimate=result.get("credits_estimate"),
            ),
        },
    )

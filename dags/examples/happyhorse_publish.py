"""
Publishing: runs whenever a HappyHorse clip lands (an asset event on the ``happyhorse_clips`` alias),
checks the clip against the checksum in the event and writes a manifest beside it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from airflow.sdk import DAG, AssetAlias, ObjectStoragePath, task

with DAG(
    dag_id="happyhorse_publish",
    schedule=[AssetAlias("happyhorse_clips")],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["happyhorse", "example"],
    doc_md=__doc__,
):

    @task
    def publish(triggering_asset_events: dict | None = None) -> list[str]:
        published = []
        # Keyed by the alias the DAG is scheduled on; each event names the clip's own asset.
        for events in (triggering_asset_events or {}).values():
            for event in events:
                clip = ObjectStoragePath(event.asset.uri)
                digest = hashlib.sha256(clip.read_bytes()).hexdigest()
                if digest != event.extra.get("sha256"):
                    raise ValueError(f"{clip} does not match its checksum: not publishing it")
                manifest = clip.with_name(clip.name + ".manifest.json")
                manifest.write_text(json.dumps({"clip": str(clip), **event.extra}, indent=2))
                published.append(str(clip))
        return published

    publish()

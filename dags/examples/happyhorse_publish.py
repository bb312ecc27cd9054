"""
Publishing: runs whenever a HappyHorse clip lands (an asset event on the ``happyhorse_clips`` alias),
checks the clip against the checksum in the event and writes a manifest beside it, once per clip.

A run sees each event twice (under the alias it is scheduled on and under the clip's own asset), and a
cleared or re-run publish task sees its events again: each clip (its path and job id) is published
once, and a manifest that already names the same clip is left as it is.
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
    # [START howto_publish_stored_clips]
    @task
    def publish(triggering_asset_events: dict | None = None) -> list[str]:
        clips = {}
        for events in (triggering_asset_events or {}).values():
            for event in events:
                clips[(event.asset.uri, event.extra.get("job_id"))] = event
        published = []
        for (uri, _job_id), event in sorted(clips.items()):
            clip = ObjectStoragePath(uri)
            manifest = clip.with_name(clip.name + ".manifest.json")
            if manifest.exists() and json.loads(manifest.read_text()).get("sha256") == event.extra.get("sha256"):
                print(f"{clip} is already published")
                continue
            digest = hashlib.sha256(clip.read_bytes()).hexdigest()
            if digest != event.extra.get("sha256"):
                raise ValueError(f"{clip} does not match its checksum: not publishing it")
            manifest.write_text(json.dumps({"clip": str(clip), **event.extra}, indent=2))
            print(f"Published {clip}")
            published.append(str(clip))
        return published

    publish()
    # [END howto_publish_stored_clips]

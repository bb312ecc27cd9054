"""
7. Secrets: after every other trial, no API key is anywhere the cluster wrote.

``AirflowCluster.find_secret`` reads every file under the cluster's home (component, task, trigger and
parsing logs) and every column of every metadata table (XComs, trigger rows with their kwargs decrypted,
rendered fields, DAG-run confs, task instances...) except ``connection``, where a key belongs. To show
that the search reaches those places, the storm trial's batch token (in its run id, conf, prompts,
XComs and rendered fields) is searched for the same way and must be found there.
"""

from __future__ import annotations

import time

from reliability.lab import Lab, LogView
from reliability.plan import Plan
from reliability.report import Row
from reliability.trials.base import Trial, VideoBatchTrial

CANARY_MUST_BE_IN = ("file", "db:dag_run.conf", "db:xcom.value", "db:rendered_task_instance_fields.rendered_fields")


def place_kind(place: str) -> str:
    """``db:xcom.value[...]`` -> ``db:xcom.value``; a file's ``path:line`` -> ``file``."""
    return place.split("[", 1)[0] if place.startswith("db:") else "file"


class SecretsTrial(Trial):
    item = "7"
    title = "Secrets: every trial's API key, searched in all logs and DB tables"
    expect_exception_texts = True
    """The suite has trials whose tasks fail (ambiguous submissions, bad input): their exception texts must be seen."""

    def __init__(self, plan: Plan, canary_trial: VideoBatchTrial) -> None:
        super().__init__(plan)
        self.canary_trial = canary_trial

    def evaluate(self, lab: Lab) -> Row:
        self.started = time.monotonic()
        cluster = lab.cluster
        row = self.new_row(len(lab.apis))
        for api in lab.apis.values():
            places = cluster.find_secret(api.api_key)
            row.count_task(
                [f"found in {place}" for place in places[:10]], expect_success=True, where=f"{api.conn_id}'s key"
            )
        keys = [api.api_key for api in lab.apis.values()]
        texts = [
            text
            for path in cluster.log_files()
            if "dag_id=" in path.as_posix()
            for text in LogView.read(path).exception_texts()
        ]
        leaked = [text for text in texts if any(key in text for key in keys)]
        row.check(not leaked, f"a key is in {len(leaked)} exception text(s) of task logs")
        if self.expect_exception_texts:
            row.check(bool(texts), "no exception text in any task log: that check saw nothing")

        canary = self.canary_trial.batch
        found = cluster.find_secret(canary) if canary else []
        kinds = sorted({place_kind(place) for place in found})
        for kind in CANARY_MUST_BE_IN:
            row.check(kind in kinds, f"the canary {canary!r} was not found in {kind}: the search does not reach it")

        duplicates = sum(int(api.stats()["duplicate_submissions"]) for api in lab.apis.values() if api.emulator.running)
        row.duplicates = duplicates
        row.check(duplicates == 0, f"{duplicates} duplicate paid submissions over all APIs")
        files = sum(1 for path in cluster.home.rglob("*") if path.is_file())
        row.facts["searched"] = f"{files} files, {len(cluster.tables())} tables"
        row.facts["exception texts checked"] = len(texts)
        row.facts["canary found in"] = ", ".join(
            kind.removeprefix("db:") for kind in CANARY_MUST_BE_IN if kind in kinds
        )
        self.ended = time.monotonic()
        row.seconds = round(self.ended - self.started, 1)
        return row

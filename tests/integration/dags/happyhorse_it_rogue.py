"""
Integration-test DAG that is not the provider's, for the HappyHorse view's file rule: plain tasks push a
``job_id`` XCom (so the view lists them) and return a result naming a secret file, once directly and once
through ``.mp4`` / ``.poster.jpg`` symlinks with a record forged beside the links. The view must serve none
of it. Its runs are made and removed by tests/integration/test_ui_api.py (``HAPPYHORSE_IT_SECRET``: the
secret file; ``HAPPYHORSE_IT_ROGUE_DIR``: where the links go).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_current_context, task

JOB_ID = "n92rogue01"


def _secret() -> Path:
    return Path(os.environ.get("HAPPYHORSE_IT_SECRET", "/etc/passwd"))


def _result(stored: str, poster: str) -> dict[str, Any]:
    """A result as consistent as a DAG author can make it: the secret's true size and SHA-256."""
    get_current_context()["ti"].xcom_push(key="job_id", value=JOB_ID)
    body = _secret().read_bytes()
    return {
        "job_id": JOB_ID,
        "status": "SUCCESS",
        "stored_path": stored,
        "stored_size": len(body),
        "stored_sha256": hashlib.sha256(body).hexdigest(),
        "poster_path": poster,
    }


with DAG(dag_id="happyhorse_it_rogue", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def plain() -> dict[str, Any]:
        secret = _secret()
        return _result(str(secret), str(secret.with_name(f"{secret.stem}.poster.jpg")))

    @task
    def linked() -> dict[str, Any]:
        folder = Path(os.environ.get("HAPPYHORSE_IT_ROGUE_DIR", "/tmp/happyhorse-it-rogue"))
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("rogue.mp4", "rogue.poster.jpg"):
            (folder / name).unlink(missing_ok=True)
            (folder / name).symlink_to(_secret())
        result = _result(f"file://{folder}/rogue.mp4", f"file://{folder}/rogue.poster.jpg")
        record = {
            "fingerprint": None,
            "job_id": JOB_ID,
            "size": result["stored_size"],
            "sha256": result["stored_sha256"],
            "result": result,
            "poster_size": result["stored_size"],
            "poster_sha256": result["stored_sha256"],
        }
        (folder / "rogue.mp4.happyhorse.json").write_text(json.dumps(record))  # beside the link, not the target
        return result

    plain()
    linked()

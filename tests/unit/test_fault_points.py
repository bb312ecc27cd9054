"""The reliability suite's kill points: inert by default, SIGKILL on the first try when named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

CALL = "from airflow_provider_happyhorse.fault_points import fault_point; fault_point({name!r}, {try_number})"


@pytest.mark.parametrize(
    ("configured", "name", "try_number", "killed"),
    [
        (None, "after_submit", 1, False),
        ("after_submit", "after_submit", 1, True),
        ("after_submit", "after_submit", 2, False),
        ("after_submit", "during_download", 1, False),
        ("during_download", "during_download", 1, True),
    ],
)
def test_fault_point(configured: str | None, name: str, try_number: int, killed: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HAPPYHORSE_FAULT_POINT"}
    if configured:
        env["HAPPYHORSE_FAULT_POINT"] = configured
    run = subprocess.run([sys.executable, "-c", CALL.format(name=name, try_number=try_number)], env=env, check=False)
    assert run.returncode == (-signal.SIGKILL if killed else 0)

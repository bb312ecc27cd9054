"""The reliability suite's default run (``python -m reliability.run``), end to end: every row must pass.

It starts a real Airflow cluster and one emulator per trial (about three minutes on two cores). The table and
the JSON results are in the test's output and temporary directory when it fails.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 840  # seconds; the run then gets SIGTERM, which stops what it started


def test_default_reliability_run_passes(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "reliability.run", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
        pytest.fail(f"the reliability run took more than {RUN_TIMEOUT} s:\n{output[-6000:]}")
    print(output)

    (results,) = tmp_path.glob("reliability-default-*.json")
    document = json.loads(results.read_text())
    failed = {f"{row['item']}. {row['trial']}": row["problems"][:5] for row in document["rows"] if not row["passed"]}
    assert failed == {}, output[-6000:]
    assert process.returncode == 0, output[-6000:]
    assert sorted({row["item"] for row in document["rows"]}, key=int) == [str(item) for item in range(1, 11)]
    assert document["stop_errors"] == []

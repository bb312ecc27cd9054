"""The HappyHorse view's list endpoint with 10,000 result rows on SQLite (issue 15, item 6).

    .venv/bin/python benchmarks/ui_gallery.py [--rows 10000] [--requests 20]

A fresh Airflow home and SQLite metadata DB; one real run (`airflow dags test` of the integration-test DAG
``happyhorse_it_private`` against the emulator) makes one real task instance with its result and ``job_id``
XComs; that task instance is then copied as mapped task instances (map indexes 0..N-1, each with its own
XComs and a timestamp one second apart) until the DB holds N result rows. The endpoints are then called on
Airflow's real api-server application (``create_app``, in this process, with a real token), each
``--requests`` times, and their latencies printed: the gallery's first page, a page deep in the list, a DAG
filter, the availability filter, and the spend. Target: the list answers
within 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "tests" / "integration" / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "happyhorse_it_private"
TARGET_MS = 300.0


def fill(home: Path, rows: int) -> None:
    from happyhorse_emulator import EmulatorConfig, EmulatorProcess

    output = home / "clips"
    with EmulatorProcess(EmulatorConfig(speed=0.01)) as emulator:
        connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
        env = {
            **os.environ,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
            "HAPPYHORSE_IT_OUTPUT": f"file://{output}",
        }
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        subprocess.run([AIRFLOW, "dags", "test", DAG_ID, "2026-03-01"], env=env, check=True, capture_output=True)
    db = sqlite3.connect(home / "airflow.db")
    db.row_factory = sqlite3.Row
    ti = dict(db.execute("SELECT * FROM task_instance WHERE dag_id = ?", (DAG_ID,)).fetchone())
    xcoms = [dict(row) for row in db.execute("SELECT * FROM xcom WHERE dag_id = ?", (DAG_ID,))]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ti_rows, xcom_rows = [], []
    for index in range(rows - 1):
        ti_rows.append({**ti, "id": str(uuid.uuid4()), "map_index": index})
        stamp = (start + timedelta(seconds=index)).strftime("%Y-%m-%d %H:%M:%S.%f")
        xcom_rows += [{**xcom, "map_index": index, "timestamp": stamp} for xcom in xcoms]
    for table, values in (("task_instance", ti_rows), ("xcom", xcom_rows)):
        columns = list(values[0])
        placeholders = ", ".join(f":{column}" for column in columns)
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608  # our own names
        db.executemany(statement, values)
    db.commit()
    count = db.execute("SELECT count(*) FROM xcom WHERE key = 'return_value'").fetchone()[0]
    db.close()
    print(f"{count} result rows in {home / 'airflow.db'}")


def measure(requests: int) -> list[tuple[str, list[float]]]:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    headers = {"Authorization": f"Bearer {token}"}
    calls = [
        ("list: first page", "/happyhorse/api/clips", {}),
        ("list: page 200 (offset 4,800)", "/happyhorse/api/clips", {"offset": 4800}),
        ("list: one DAG", "/happyhorse/api/clips", {"dag_id": DAG_ID}),
        (
            "list: a date range",
            "/happyhorse/api/clips",
            {"since": "2026-01-01T01:00:00Z", "until": "2026-01-01T02:00:00Z"},
        ),
        ("list: stored clips only", "/happyhorse/api/clips", {"availability": "stored"}),
        ("spend per DAG and day", "/happyhorse/api/spend", {}),
    ]
    results = []
    for name, path, params in calls:
        client.get(path, params=params, headers=headers).raise_for_status()  # warm up
        times = []
        for _ in range(requests):
            began = time.perf_counter()
            client.get(path, params=params, headers=headers).raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
        results.append((name, times))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="happyhorse-ui-bench-"))
    os.environ.update(
        {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    )
    fill(home, args.rows)
    print(f"\n| endpoint ({args.rows:,} result rows, SQLite) | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    worst_list = 0.0
    for name, times in measure(args.requests):
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(f"| {name} | {statistics.median(times):.0f} | {p95:.0f} | {max(times):.0f} |")
        if name.startswith("list"):
            worst_list = max(worst_list, p95)
    met = worst_list <= TARGET_MS
    verdict = "met" if met else "NOT met"
    print(
        f"\nTarget: the list answers within {TARGET_MS:.0f} ms (p95 of every list call): {worst_list:.0f} ms, {verdict}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

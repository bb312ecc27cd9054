"""The ``airflow`` command line of this interpreter's venv, run against one test home (SQLite) and a DAG folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env(home: Path, dags: Path, **extra: str) -> dict[str, str]:
    """This process's environment with Airflow's home, DAG folder and ``extra`` set; no example DAGs."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **extra,
    }


def airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``airflow *args``, its output captured as text; five minutes at most."""
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)


def migrated_home(home: Path) -> Path:
    """``home`` with Airflow's database made (``airflow db migrate``)."""
    done = airflow("db", "migrate", env=airflow_env(home, home))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return home


def key_leaks(log: str, key: str) -> list[str]:
    """The lines of ``log`` that show ``key``.

    Airflow 3.0's ``dags test`` prints its own request to mask the key (``MaskSecret(value=...)``, at debug level)
    before the masker knows the key; later Airflows mask first. Any other appearance is a leak."""
    return [line for line in log.splitlines() if key in line and "MaskSecret(value=" not in line]

"""
The provider as a user gets it: the wheel, installed next to a plain ``apache-airflow`` (no test extras, and no
emulator: that is its own distribution, emulator/) in a fresh virtualenv. Airflow finds it and builds its
connection form from it, the operator, sensor and trigger import, the example DAGs parse, the command runs,
and the long description stands on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from email import message_from_string
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "dags" / "examples"
UV = Path(sys.executable).with_name("uv")
AIRFLOW = "apache-airflow==3.3.2"

CHECK = """
import json
from airflow.providers_manager import ProvidersManager
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.sensors.happyhorse import HappyHorseJobSensor
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger
manager = ProvidersManager()
print(json.dumps({
    "provider": "airflow-provider-happyhorse" in manager.providers,
    "form": manager.field_behaviours.get("happyhorse"),
    "hook": manager.hooks["happyhorse"].hook_class_name if manager.hooks.get("happyhorse") else None,
}))
"""

# The example DAGs as Airflow's DAG processor parses them (the folder on sys.path: they share a settings module).
PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
sys.path.insert(0, sys.argv[1])
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": {k: str(v)[-300:] for k, v in bag.import_errors.items()}}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(REPO)], check=True
    )
    [wheel] = (work / "dist").glob("*.whl")
    venv = work / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "-p", str(venv / "bin" / "python"), str(wheel), AIRFLOW], check=True
    )
    return wheel, venv


def run(venv: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "AIRFLOW_HOME": str(home), "HOME": str(home)}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, check=False)


def test_the_wheel_holds_the_package_and_a_description_that_stands_alone(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        message = message_from_string(archive.read(metadata).decode())
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        entries = archive.read(entry_points).decode()
    assert {name.split("/")[0] for name in names} <= {"airflow_provider_happyhorse", metadata.split("/")[0]}
    assert [name for name in names if "emulator" in name] == []  # the emulator is its own distribution
    assert "emulator" not in (message.get_all("Provides-Extra") or [])
    assert [req for req in message.get_all("Requires-Dist") or [] if "emulator" in req] == []
    description = message.get_payload()
    assert description.strip() == (REPO / "docs" / "pypi.md").read_text().strip()
    assert "make demo" not in description
    assert "dags/examples" not in description
    assert "provider_info = airflow_provider_happyhorse.get_provider_info:get_provider_info" in entries
    assert "happyhorse-jobs = airflow_provider_happyhorse.jobs_cli:main" in entries
    assert "happyhorse-emulator" not in entries


def test_the_metadata_is_fit_for_pypi_and_airflow_reports_the_same_version(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, venv = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        message = message_from_string(archive.read(metadata).decode())
    classifiers = message.get_all("Classifier") or []
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider", "Typing :: Typed"} <= set(
        classifiers
    )
    python_classifiers = {
        c.rsplit(" ", 1)[-1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")
    }
    assert python_classifiers == {"3.11", "3.12", "3.13"}  # the minors requires-python admits, no more
    assert set(message["Requires-Python"].split(",")) == {">=3.11", "<3.14"}
    assert message["License-Expression"] == "Apache-2.0"
    assert any(name.endswith("licenses/LICENSE") for name in names)
    assert "airflow_provider_happyhorse/py.typed" in names
    shown = run(venv, str(venv / "bin" / "airflow"), "providers", "get", "airflow-provider-happyhorse", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert message["Version"] in shown.stdout
    assert message["Version"] == (REPO / "airflow_provider_happyhorse" / "version.py").read_text().split('"')[1]


def test_a_plain_airflow_finds_the_provider_and_its_connection_form(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    checked = run(venv, str(venv / "bin" / "python"), "-c", CHECK, home=tmp_path)
    assert checked.returncode == 0, checked.stderr
    found = json.loads(checked.stdout.strip().splitlines()[-1])
    assert found["provider"] is True
    assert found["hook"] == "airflow_provider_happyhorse.hooks.happyhorse.HappyHorseHook"
    assert found["form"]["hidden_fields"] == ["login", "port", "schema"]
    assert found["form"]["relabeling"] == {"host": "Base URL", "password": "API key"}


def test_the_command_runs_and_the_examples_parse_without_the_emulator(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    python = str(venv / "bin" / "python")
    absent = run(venv, python, "-c", "import happyhorse_emulator", home=tmp_path)
    assert "No module named 'happyhorse_emulator'" in absent.stderr
    assert not (venv / "bin" / "happyhorse-emulator").exists()
    jobs = run(venv, str(venv / "bin" / "happyhorse-jobs"), "forget", "--help", home=tmp_path)
    assert jobs.returncode == 0, jobs.stderr
    assert "--dag-id" in jobs.stdout
    assert "--map-index" in jobs.stdout
    parsed = run(venv, python, "-c", PARSE, str(EXAMPLES), home=tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    found = json.loads(parsed.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["dags"] == sorted(
        path.stem for path in EXAMPLES.glob("happyhorse_*.py") if path.stem != "happyhorse_example_settings"
    )

"""Provider registration: the metadata Airflow reads, checked the way Airflow checks it."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from airflow.providers.common.compat.sdk import BaseHook, BaseOperator, BaseOperatorLink, BaseSensorOperator
from airflow.triggers.base import BaseTrigger

import airflow_provider_happyhorse
from airflow_provider_happyhorse.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR, get_provider_info
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

DISTRIBUTION = "airflow-provider-happyhorse"
REPO_ROOT = Path(airflow_provider_happyhorse.__file__).resolve().parent.parent
INFO = get_provider_info()


def airflow_schema() -> dict[str, Any]:
    schema_file = resources.files("airflow") / "provider_info.schema.json"
    schema: dict[str, Any] = json.loads(schema_file.read_text(encoding="utf-8"))
    return schema


def test_provider_info_validates_against_airflows_own_schema() -> None:
    schema = airflow_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(INFO), key=str)
    assert errors == []


def test_the_schema_check_would_catch_a_broken_info() -> None:
    # The schema is strict enough to matter: a wrong type in a section we use is refused.
    broken = {**INFO, "connection-types": [{"connection-type": "happyhorse"}]}
    validator = jsonschema.validators.validator_for(airflow_schema())(airflow_schema())
    assert list(validator.iter_errors(broken)) != []


def test_provider_info_lists_every_kind_of_component() -> None:
    assert INFO["package-name"] == DISTRIBUTION
    assert INFO["versions"] == [metadata.version(DISTRIBUTION)]
    for section in ("integrations", "hooks", "operators", "sensors", "triggers", "connection-types", "extra-links"):
        assert INFO[section], section
    declared = {integration["integration-name"] for integration in INFO["integrations"]}
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in INFO[section]:
            assert entry["integration-name"] in declared


@pytest.mark.parametrize(
    ("section", "base"),
    [("hooks", BaseHook), ("operators", BaseOperator), ("sensors", BaseSensorOperator), ("triggers", BaseTrigger)],
)
def test_every_named_module_imports_and_defines_its_kind(section: str, base: type) -> None:
    for entry in INFO[section]:
        for module_name in entry["python-modules"]:
            module = importlib.import_module(module_name)
            own = [
                cls
                for _, cls in inspect.getmembers(module, inspect.isclass)
                if cls.__module__ == module_name and issubclass(cls, base) and cls is not base
            ]
            assert own, f"{module_name} defines no {base.__name__}"


def import_class(path: str) -> type:
    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert inspect.isclass(cls)
    return cls


def test_connection_types_name_importable_hooks_that_agree() -> None:
    for connection_type in INFO["connection-types"]:
        hook = import_class(connection_type["hook-class-name"])
        assert issubclass(hook, BaseHook)
        assert hook.conn_type == connection_type["connection-type"]  # type: ignore[attr-defined]
        assert hook.hook_name == connection_type["hook-name"]  # type: ignore[attr-defined]
    assert INFO["connection-types"] == [
        {
            "connection-type": "happyhorse",
            "hook-class-name": "airflow_provider_happyhorse.hooks.happyhorse.HappyHorseHook",
            "hook-name": "HappyHorse",
            "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            "conn-fields": CONN_FIELDS,
        }
    ]


@pytest.mark.skipif(
    not hasattr(__import__("airflow.providers_manager").providers_manager.ProvidersManager, "_load_ui_metadata"),
    reason="Airflow reads the connection form from the provider info since 3.3; before, from the hook (tested below)",
)
def test_airflow_reads_the_connection_form_from_the_provider_info() -> None:
    # What /ui/connections/hook_meta serves: Airflow 3.3 builds it from the provider info, without wtforms.
    from airflow.providers_manager import ProvidersManager

    behaviour = ProvidersManager().field_behaviours["happyhorse"]
    assert behaviour["hidden_fields"] == ["login", "port", "schema"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "https://happyhorse.app"


@pytest.mark.skipif(
    not hasattr(__import__("airflow.providers_manager").providers_manager.ProvidersManager, "_load_ui_metadata"),
    reason="Airflow reads the connection form from the provider info since 3.3",
)
def test_the_connection_form_has_the_dialect_field() -> None:
    from airflow.providers_manager import ProvidersManager

    widget = ProvidersManager().connection_form_widgets["extra__happyhorse__dialect"]
    assert widget.field_name == "dialect"
    assert widget.field["schema"]["enum"] == ["happyhorse", "dashscope", None]
    assert widget.field["schema"]["title"] == "Dialect"


def test_the_hooks_fallback_form_is_the_same_form() -> None:
    fallback = HappyHorseHook.get_ui_field_behaviour()
    assert fallback == {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


def test_the_config_declares_every_option_the_provider_reads() -> None:
    section = INFO["config"]["happyhorse"]
    assert set(section["options"]) == {"freeze_triggerer_heap", "view_roots"}
    for name, option in section["options"].items():
        assert {"description", "version_added", "type", "example", "default"} <= set(option), name
    roots = section["options"]["view_roots"]
    assert (roots["type"], roots["default"]) == ("string", "")
    assert "," in roots["example"]


def test_airflow_reads_view_roots_with_the_declared_default_and_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.configuration import conf

    monkeypatch.delenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", raising=False)
    assert conf.get("happyhorse", "view_roots", fallback="") == ""
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", "/data/clips,s3://bucket/clips")
    assert conf.get("happyhorse", "view_roots", fallback="") == "/data/clips,s3://bucket/clips"


def test_extra_links_name_importable_operator_links() -> None:
    for path in INFO["extra-links"]:
        link = import_class(path)
        assert issubclass(link, BaseOperatorLink)
        name = inspect.getattr_static(link, "name")
        assert isinstance(name, str)
        assert name


def test_hook_conventions() -> None:
    assert HappyHorseHook.conn_type == "happyhorse"
    assert HappyHorseHook.default_conn_name == "happyhorse_default"
    assert HappyHorseHook.conn_name_attr == "happyhorse_conn_id"
    assert HappyHorseHook.hook_name == "HappyHorse"


def test_entry_point_is_registered_in_the_installed_distribution() -> None:
    distribution = metadata.distribution(DISTRIBUTION)
    points = [point for point in distribution.entry_points if point.group == "apache_airflow_provider"]
    assert [(point.name, point.value) for point in points] == [
        ("provider_info", "airflow_provider_happyhorse.get_provider_info:get_provider_info")
    ]
    assert points[0].load()() == INFO


def test_connection_form_relabels_host_and_password_and_hides_login() -> None:
    behaviour = HappyHorseHook.get_ui_field_behaviour()
    assert "login" in behaviour["hidden_fields"]
    assert "host" not in behaviour["hidden_fields"]
    assert "password" not in behaviour["hidden_fields"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "https://happyhorse.app"
    # The extra placeholder is JSON that the hook understands.
    extra = json.loads(behaviour["placeholders"]["extra"])
    assert set(extra) <= {
        "timeout",
        "max_retries",
        "submit_max_retries",
        "retry_initial_delay",
        "retry_max_delay",
        "max_retry_after",
        "max_connections",
        "scheme",
    }


def test_airflow_providers_cli_shows_the_provider(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # Airflow 3.0 logs INFO lines to stdout, ahead of the JSON.
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        # The tree under test, whatever state the venv's editable install is in.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    commands = {
        "get": [airflow, "providers", "get", DISTRIBUTION, "--full", "-o", "json"],
        "hooks": [airflow, "providers", "hooks", "-o", "json"],
    }
    # Both at once: each is a cold Airflow start.
    running = {
        name: subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    results = {name: process.communicate(timeout=240) for name, process in running.items()}
    for name, process in running.items():
        assert process.returncode == 0, f"airflow providers {name} failed:\n{results[name][1][-3000:]}"

    shown = json.loads(results["get"][0])
    assert [provider["package-name"] for provider in shown] == [DISTRIBUTION]
    assert shown[0]["versions"] == INFO["versions"]
    assert shown[0]["connection-types"] == INFO["connection-types"]

    hooks = [hook for hook in json.loads(results["hooks"][0]) if hook["package_name"] == DISTRIBUTION]
    assert hooks == [
        {
            "connection_type": "happyhorse",
            "class": "airflow_provider_happyhorse.hooks.happyhorse.HappyHorseHook",
            "conn_id_attribute_name": "happyhorse_conn_id",
            "package_name": DISTRIBUTION,
            "hook_name": "HappyHorse",
        }
    ]

"""The package's public API: what it must export (found by introspection), what each name is, the error tree
its docstring draws, and importing the package for its provider info loads none of it."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import subprocess
import sys

from airflow.providers.common.compat.sdk import BaseHook, BaseOperator, BaseSensorOperator
from airflow.triggers.base import BaseTrigger

import airflow_provider_happyhorse
from airflow_provider_happyhorse import exceptions
from airflow_provider_happyhorse.get_provider_info import get_provider_info


def defined_in(module_name: str, base: type) -> set[str]:
    """The public subclasses of ``base`` that ``module_name`` itself defines, found by introspection."""
    module = importlib.import_module(module_name)
    return {
        name
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module_name and issubclass(cls, base) and not name.startswith("_")
    }


def test_every_component_the_provider_registers_and_every_error_class_is_exported() -> None:
    info = get_provider_info()
    expected = {"__version__", *defined_in("airflow_provider_happyhorse.exceptions", Exception)}
    for section, base in [
        ("hooks", BaseHook),
        ("operators", BaseOperator),
        ("sensors", BaseSensorOperator),
        ("triggers", BaseTrigger),
    ]:
        for entry in info[section]:
            for module_name in entry["python-modules"]:
                expected |= defined_in(module_name, base)
    expected |= {path.rpartition(".")[2] for path in info["extra-links"]}
    assert {"HappyHorseError", "GenerateVideoOperator", "HappyHorseJobSensor"} <= expected  # introspection found them
    missing = expected - set(airflow_provider_happyhorse.__all__)
    assert not missing, f"not exported from airflow_provider_happyhorse: {sorted(missing)}"


def test_every_public_name_is_the_object_of_that_name_in_its_own_module() -> None:
    exported = airflow_provider_happyhorse.__all__
    assert len(set(exported)) == len(exported)
    for name in exported:
        value = getattr(airflow_provider_happyhorse, name)
        if name == "__version__":
            assert value == importlib.metadata.version("airflow-provider-happyhorse")
            continue
        home = value.__module__
        assert home.startswith("airflow_provider_happyhorse."), (name, home)
        assert ".emulator" not in home, (name, home)
        assert getattr(importlib.import_module(home), name) is value, name


def test_importing_the_package_for_its_provider_info_loads_nothing_else() -> None:
    code = (
        "import sys, airflow_provider_happyhorse.get_provider_info;"
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_happyhorse')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == str(
        [
            "airflow_provider_happyhorse",
            "airflow_provider_happyhorse.exceptions",  # the error tree, loaded at once: it imports only typing
            "airflow_provider_happyhorse.get_provider_info",
            "airflow_provider_happyhorse.version",
        ]
    )


def drawn_error_tree() -> dict[str, str]:
    """Each class in the tree drawn in ``exceptions``' docstring, with the class drawn as its parent."""
    parents: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    for line in (exceptions.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*(?:[├└]── )?)([A-Z]\w*Error)\b", line)
        if match is None:
            continue
        depth = len(match.group(1))
        while path and path[-1][0] >= depth:
            path.pop()
        if path:
            parents[match.group(2)] = path[-1][1]
        path.append((depth, match.group(2)))
    return parents


def test_the_error_tree_drawn_in_the_docstring_is_the_class_tree() -> None:
    drawn = drawn_error_tree()
    assert drawn["RateLimitError"] == "APIStatusError"  # the drawing was read
    defined = defined_in("airflow_provider_happyhorse.exceptions", Exception) - {"HappyHorseError"}
    assert set(drawn) == defined
    # InvalidRequestError is drawn under the root and, as the docstring says below the drawing, is an APIStatusError.
    drawn["InvalidRequestError"] = "APIStatusError"
    bases = {name: tuple(base.__name__ for base in getattr(exceptions, name).__bases__) for name in drawn}
    assert bases == {name: (parent,) for name, parent in drawn.items()}


def test_exceptions_all_lists_every_error_class_it_defines() -> None:
    defined = defined_in("airflow_provider_happyhorse.exceptions", Exception)
    assert "HappyHorseError" in defined  # the introspection found the module's classes
    assert set(exceptions.__all__) == defined

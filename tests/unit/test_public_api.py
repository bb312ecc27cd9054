"""The package's public API: every name in ``__all__`` is there, and importing the package loads none of it."""

from __future__ import annotations

import subprocess
import sys

import airflow_provider_happyhorse


def test_every_public_name_resolves_to_the_object_in_its_module() -> None:
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

    assert airflow_provider_happyhorse.GenerateVideoOperator is GenerateVideoOperator
    assert set(airflow_provider_happyhorse.__all__) == {"__version__", *airflow_provider_happyhorse._MODULES}
    for name in airflow_provider_happyhorse.__all__:
        assert getattr(airflow_provider_happyhorse, name) is not None, name


def test_importing_the_package_for_its_provider_info_loads_nothing_else() -> None:
    code = (
        "import sys, airflow_provider_happyhorse.get_provider_info;"
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_happyhorse')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == str(
        [
            "airflow_provider_happyhorse",
            "airflow_provider_happyhorse.get_provider_info",
            "airflow_provider_happyhorse.version",
        ]
    )

"""Sphinx configuration: MyST markdown pages, the API reference from the package's docstrings (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from docutils import nodes

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
# autodoc imports the provider and so Airflow: keep whatever Airflow writes at import inside the build folder.
os.environ["AIRFLOW_HOME"] = str(DOCS / "_build" / "airflow-home")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from airflow_provider_happyhorse.version import __version__  # noqa: E402

project = "airflow-provider-happyhorse"
release = __version__
version = __version__
copyright = "the airflow-provider-happyhorse authors"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
# pypi.md is the package's long description on PyPI (pyproject's readme); pages include parts of it.
exclude_patterns = ["_build", "pypi.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Airflow's base classes document execute() and on_kill() for operator authors, not for this provider's users.
autodoc_inherit_docstrings = False
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"airflow-provider-happyhorse {release}"


def _config_table() -> list[str]:
    """The provider info's ``[happyhorse]`` options as a reST list table (one source: what Airflow reads)."""
    from airflow_provider_happyhorse.get_provider_info import get_provider_info

    options = get_provider_info()["config"]["happyhorse"]["options"]
    rows = [".. list-table::", "   :header-rows: 1", "   :widths: 20 10 12 58", "", "   * - option", "     - type"]
    rows += ["     - default", "     - meaning"]
    for name, option in options.items():
        default = option["default"]
        example = f" Example: ``{option['example']}``." if option.get("example") else ""
        rows += [
            f"   * - ``{name}`` (``AIRFLOW__HAPPYHORSE__{name.upper()}``)",
            f"     - {option['type']}",
            f"     - ``{default}``" if default else "     - (empty)",
            f"     - {option['description']}{example}",
        ]
    return rows


def setup(app: Any) -> None:
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class HappyHorseConfig(SphinxDirective):
        def run(self) -> list[Any]:
            container = nodes.container()
            self.state.nested_parse(StringList(_config_table(), source="get_provider_info.py"), 0, container)
            return container.children

    app.add_directive("happyhorse-config", HappyHorseConfig)

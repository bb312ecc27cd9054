"""Sphinx configuration: MyST markdown pages, the API reference from the package's docstrings (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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

"""Sphinx configuration of the airflow-provider-oes docs (built in CI with warnings as errors)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_oes import __version__

project = "airflow-provider-oes"
author = "airflow-provider-oes contributors"
copyright = "2026, airflow-provider-oes contributors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Airflow's own classes are documented by Airflow; references to them are not checked here.
nitpicky = False

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"airflow-provider-oes {__version__}"

"""The package's shape (issue 19): private modules with public names, small modules, short module docstrings.

The import layers and the absence of cycles are checked by ``lint-imports`` (``pyproject.toml``); these are
the rules it cannot express. The simulator package (``testing/``) is held to the private-names rule, not yet
to the size and docstring rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_oes"
ALL_MODULES = sorted(PACKAGE.rglob("*.py"))
MODULES = [p for p in ALL_MODULES if "testing" not in p.relative_to(PACKAGE).parts]
MAX_LINES = 400
MAX_DOCSTRING_LINES = 10
# Public modules of other engineers' areas whose module docstrings are user documentation still.
LONG_DOCSTRINGS_ALLOWED = {"assets.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
            continue
        if not node.module.startswith("airflow_provider_oes") or node.module == _module_name(path):
            continue
        base = PACKAGE.parent.joinpath(*node.module.split("."))
        for alias in node.names:
            is_module = base.joinpath(alias.name).is_dir() or base.joinpath(alias.name + ".py").is_file()
            if alias.name.startswith("_") and not alias.name.startswith("__") and not is_module:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {alias.name} from {node.module}")
    return found


def test_the_rules_see_the_engine() -> None:
    names = {str(p.relative_to(PACKAGE)) for p in MODULES}
    assert {"triggers/_polling/poller.py", "triggers/_feed/feed.py", "_api/query.py", "_time.py"} <= names
    assert PACKAGE / "testing" / "simulator" / "api_routes.py" in ALL_MODULES


def test_no_private_name_crosses_modules() -> None:
    # Modules may be private (``_api``); what one imports from another carries no underscore, as in httpx.
    assert [found for path in ALL_MODULES for found in _private_imports(path)] == []


def test_a_private_name_import_is_seen(tmp_path: Path) -> None:
    probe = PACKAGE / "triggers" / "_probe_for_test_layers.py"
    probe.write_text("from airflow_provider_oes.triggers._shared.connections import _registry\n")
    try:
        assert _private_imports(probe) == [
            "triggers/_probe_for_test_layers.py:1 imports _registry from airflow_provider_oes.triggers._shared.connections"
        ]
    finally:
        probe.unlink()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_with_short_docstrings(path: Path) -> None:
    source = path.read_text()
    assert source.count("\n") <= MAX_LINES
    docstring = ast.get_docstring(ast.parse(source), clean=False) or ""
    if str(path.relative_to(PACKAGE)) not in LONG_DOCSTRINGS_ALLOWED:
        assert docstring.count("\n") + 1 <= MAX_DOCSTRING_LINES, "design notes belong in docs/internals/"

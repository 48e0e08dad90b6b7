#!/usr/bin/env bash
# Quickstart command 2: lint, type-check and run the whole test suite (unit, simulator integration,
# example DAG runs, the browser test of the connection form, full-stack Airflow processes).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not ui and not fullstack"`.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

# The browser test drives Debian's Chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian's chromium for the UI test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "[setup] /usr/bin/chromium is missing: run 'sudo apt-get install chromium' (the UI test needs it)" >&2
  fi
fi

# --- PostgreSQL (owner: pg) -----------------------------------------------------------------------------
# The full-stack tests run Airflow on a private PostgreSQL server started by the harness
# (tests/harness/postgres.py) with Debian's initdb/pg_ctl from /usr/lib/postgresql/<version>/bin.
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null && ! command -v pg_ctl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian's postgresql for the full-stack tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
  else
    echo "[setup] PostgreSQL is missing: run 'sudo apt-get install postgresql' (the full-stack tests need it)" >&2
  fi
fi
# --- end PostgreSQL ----------------------------------------------------------------------------------------

# OES_LINT=0 skips ruff, mypy, lint-imports and the docs build: CI lints once, then runs the tests on the other
# Pythons and Airflows.
if [ "${OES_LINT:-1}" != 0 ]; then
  echo "[lint] ruff" >&2
  ruff check .
  ruff format --check .
  echo "[types] mypy" >&2
  mypy
  echo "[imports] lint-imports (layers, no cycles: pyproject.toml [tool.importlinter])" >&2
  lint-imports
  # Every warning is an error: a literalinclude marker that moved, a broken reference, a docstring autodoc
  # cannot read.
  if python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "[docs] sphinx" >&2
    python -m sphinx -W --keep-going -q -b html docs docs/_build/html
  else
    echo "[docs] skipped: the pinned Sphinx needs Python 3.11+ (CI builds the docs on 3.11)" >&2
  fi
fi
echo "[tests] pytest" >&2
exec python -m pytest -p no:cacheprovider "$@"

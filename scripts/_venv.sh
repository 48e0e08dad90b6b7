# Sourced by demo.sh and test.sh: create (once) and activate the project's own virtual environment.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OES_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "Python 3.10+ is needed (found: $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
# OES_UV names a uv binary: CI installs its extra environments with it (seconds instead of minutes with
# pip); without it, the standard venv and pip.
UV="${OES_UV:-}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV" >&2
  if [ -n "$UV" ]; then
    "$UV" venv -q --python "$PYTHON" "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
# OES_AIRFLOW_VERSION pins Airflow (CI uses it to test the oldest supported release); default: the newest.
# OES_CONSTRAINTS names a pip constraints file for that install (CI's Airflow 3.2 job pins the web stack
# Airflow 3.2's in-process execution API works with).
pins=()
if [ -n "${OES_AIRFLOW_VERSION:-}" ]; then
  pins+=("apache-airflow==$OES_AIRFLOW_VERSION")
fi
if [ -n "${OES_CONSTRAINTS:-}" ]; then
  pins+=(--constraint "$OES_CONSTRAINTS")
fi
# Re-install when pyproject.toml (or the constraints file) changed since the last install.
stamp="$VENV/.oes-installed"
if [ ! -f "$stamp" ] || [ "$REPO/pyproject.toml" -nt "$stamp" ] || { [ -n "${OES_CONSTRAINTS:-}" ] && [ "$OES_CONSTRAINTS" -nt "$stamp" ]; }; then
  echo "[setup] installing airflow-provider-oes with its test extras into $VENV ${pins[*]}" >&2
  if [ -n "$UV" ]; then
    "$UV" pip install -q --python "$VENV/bin/python" -e "$REPO[test]" "${pins[@]}" >&2 || true
  else
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$VENV/bin/python" -m pip install -q -e "$REPO[test]" "${pins[@]}" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  fi
  "$VENV/bin/python" -c "import airflow_provider_oes, airflow.sdk" || { echo "[setup] install failed" >&2; exit 1; }
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$REPO"

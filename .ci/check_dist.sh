#!/usr/bin/env bash
# Release artifacts, checked as a packager and a new user would meet them: build the sdist and the wheel
# (the wheel from the sdist, so the sdist is known to build), check their metadata and contents, then
# install the wheel alone into a fresh virtual environment and ask Airflow about the provider.
# Installs its own tools (build, twine, check-wheel-contents) into a throw-away environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

quiet_pip() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
# With OES_UV (CI sets it) environments are made and filled by uv, in seconds; otherwise venv and pip.
new_env() {
  if [ -n "${OES_UV:-}" ]; then "$OES_UV" venv -q --python "$PYTHON" "$1"; else "$PYTHON" -m venv "$1"; fi
}
install_into() {
  local env="$1"
  shift
  if [ -n "${OES_UV:-}" ]; then
    "$OES_UV" pip install -q --python "$env/bin/python" "$@"
  else
    quiet_pip "$env/bin/python" -m pip install -q "$@"
  fi
}

echo "[dist] tools: build, twine, check-wheel-contents" >&2
new_env "$work/tools"
install_into "$work/tools" build twine check-wheel-contents
"$work/tools/bin/python" -c "import build, twine, check_wheel_contents" || { echo "[dist] tool install failed" >&2; exit 1; }

echo "[dist] python -m build" >&2
"$work/tools/bin/python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist=("$work"/dist/*.tar.gz)
wheel=("$work"/dist/*.whl)
[ "${#sdist[@]}" = 1 ] && [ "${#wheel[@]}" = 1 ] || { echo "[dist] expected one sdist and one wheel" >&2; ls "$work/dist"; exit 1; }
ls -l "$work/dist" | tail -n +2 >&2

echo "[dist] twine check --strict" >&2
"$work/tools/bin/twine" check --strict "${sdist[0]}" "${wheel[0]}"

echo "[dist] check-wheel-contents" >&2
"$work/tools/bin/check-wheel-contents" "${wheel[0]}"

echo "[dist] sdist and wheel contents" >&2
"$work/tools/bin/python" - "${sdist[0]}" "${wheel[0]}" <<'EOF'
import sys
import tarfile
import zipfile
from email.parser import Parser

sdist, wheel = sys.argv[1:3]
with tarfile.open(sdist) as tar:
    # "airflow_provider_oes-0.1.0/README.md" -> "README.md"
    names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
problems = []
for required in ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "airflow_provider_oes/py.typed"):
    if required not in names:
        problems.append(f"sdist lacks {required}")
if not any(n.startswith("example_dags/") and n.endswith(".py") for n in names):
    problems.append("sdist lacks the example DAGs")
# All of the test suite or none of it: the repository's tests need its harness, so none.
shipped_tests = sorted(n for n in names if n.startswith(("tests/", "bench/", "scripts/", ".ci/")))
if shipped_tests:
    problems.append(f"sdist ships repository-only files: {shipped_tests}")
with zipfile.ZipFile(wheel) as whl:
    wnames = whl.namelist()
    meta_name = next(n for n in wnames if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(whl.read(meta_name).decode())
    entry_points = whl.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wnames):
    problems.append("wheel lacks .dist-info/licenses/LICENSE")
top_level = {n.split("/", 1)[0] for n in wnames if not n.split("/", 1)[0].endswith(".dist-info")}
if top_level != {"airflow_provider_oes"}:
    problems.append(f"wheel installs more than the package: {sorted(top_level)}")
checks = {
    "License-Expression": meta.get("License-Expression") == "Apache-2.0",
    "License-File": meta.get_all("License-File") == ["LICENSE"],
    "Requires-Python": meta.get("Requires-Python") == ">=3.10",
    "Keywords": bool(meta.get("Keywords")),
    "Maintainer/Author": bool(meta.get("Author") or meta.get("Author-email")),
    "requests<3": any(r.replace(" ", "").startswith("requests") and "<3" in r for r in meta.get_all("Requires-Dist")),
    "Development Status": any(c.startswith("Development Status ::") for c in meta.get_all("Classifier")),
    "testing extra": "testing" in (meta.get_all("Provides-Extra") or []),
    "provider entry point": "[apache_airflow_provider]" in entry_points,
    "pytest11 entry point": "[pytest11]" in entry_points,
}
for version in ("3.10", "3.11", "3.12", "3.13"):
    checks[f"classifier {version}"] = f"Programming Language :: Python :: {version}" in meta.get_all("Classifier")
problems += [f"wheel metadata: {name} missing or wrong" for name, ok in checks.items() if not ok]
if problems:
    sys.exit("\n".join(problems))
print(f"sdist: {len(names)} files, no tests; wheel: {len(wnames)} files; metadata checks: {len(checks)} ok")
EOF

echo "[dist] fresh virtual environment: pip install <wheel>; airflow providers get" >&2
# Away from the checkout, so that nothing can import the package from the source tree.
cd "$work"
new_env "$work/user"
install_into "$work/user" "${wheel[0]}" ${OES_AIRFLOW_VERSION:+"apache-airflow==$OES_AIRFLOW_VERSION"}
export AIRFLOW_HOME="$work/airflow_home"
# Only the JSON document: Airflow may log lines before it.
"$work/user/bin/airflow" providers get airflow-provider-oes --full -o json >"$work/providers.json" 2>"$work/providers.err" || {
  cat "$work/providers.err" >&2
  exit 1
}
"$work/user/bin/python" - "$work/providers.json" "$work/user" <<'EOF'
import importlib
import json
import sys
from importlib.metadata import version
from pathlib import Path

# Log lines may precede the JSON document: it is the first line on which a JSON array starts that runs
# to the end of the output.
lines = Path(sys.argv[1]).read_text().splitlines(keepends=True)
documents = []
for i, line in enumerate(lines):
    if line.startswith("["):
        try:
            documents.append(json.loads("".join(lines[i:])))
            break
        except json.JSONDecodeError:
            continue
[[info]] = documents
assert info["package-name"] == "airflow-provider-oes", info
assert info["versions"][0] == version("airflow-provider-oes"), info["versions"]
assert [c["connection-type"] for c in info["connection-types"]] == ["oes"], info["connection-types"]
modules = [m for kind in ("hooks", "sensors", "operators", "triggers") for e in info[kind] for m in e["python-modules"]]
assert modules, info
for module in modules:
    importlib.import_module(module)
import airflow_provider_oes

location = Path(airflow_provider_oes.__file__).resolve()
assert Path(sys.argv[2]).resolve() in location.parents, f"imported from {location}, not the fresh venv"
print(f"airflow providers get: {info['package-name']} {info['versions'][0]}, {len(modules)} modules import (Airflow {version('apache-airflow')})")
EOF
echo "[dist] ok" >&2

"""The README's "Try it against the simulator" steps, as a user types them after ``pip install``.

A fresh ``AIRFLOW_HOME`` (``airflow db migrate``), the README's first DAG saved in its ``dags`` folder, the
simulator started from the installed package with ``--seed-demo``, and ``airflow dags test`` with the
``clears_after_3s`` id: the run succeeds and the sensor saw the allocation cleared. Only the port differs (a
free one instead of 8080).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests._paths import REPO_ROOT

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_readme_first_dag_against_the_simulator(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    steps = readme.split("## Try it against the simulator", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert "python -m airflow_provider_oes.testing.simulator --port 8080 --seed-demo &" in steps
    assert "airflow dags test settle_when_cleared -c" in steps
    code = readme.split("## A first DAG", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "settle_when_cleared.py").write_text(code)
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)

    simulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_oes.testing.simulator", "--port", "0", "--seed-demo"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        lines = [simulator.stdout.readline() for _ in range(4)]
        url = re.search(r"on (http://127\.0\.0\.1:\d+) token=sim-token enterprise=sim-enterprise", lines[0])
        assert url, lines
        seeded = dict(line.split()[1:3] for line in lines[1:])
        env["AIRFLOW_CONN_OES_DEFAULT"] = json.dumps(
            {
                "conn_type": "oes",
                "host": url.group(1),
                "password": "sim-token",
                "extra": {"enterprise_id": "sim-enterprise"},
            }
        )
        conf = json.dumps({"allocation_id": seeded["clears_after_3s"]})
        result = subprocess.run(
            [*airflow, "dags", "test", "settle_when_cleared", "-c", conf],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert f"Allocation cleared: allocation {seeded['clears_after_3s']}" in out
    assert "Dag run in success state" in out

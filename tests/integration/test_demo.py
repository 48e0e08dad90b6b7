"""The README's Quickstart demo (``scripts/demo.py``, run by ``scripts/demo.sh``) works end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests._paths import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]


def test_quickstart_demo_gates_settlement_on_the_cleared_allocation() -> None:
    # A clean environment, as on a newcomer's machine: the demo makes its own AIRFLOW_HOME and connection.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "DAG run oes_settlement_gating finished: success" in out
    assert "Requests the sensor sent to the simulator: 3" in out  # two reads while reserved, then cleared
    summary = out.split("The allocation that gated settlement (XCom of wait_for_allocation):\n", 1)[1]
    gated = json.loads(summary.split("What settle booked", 1)[0])
    assert gated["status"] == "cleared"
    assert gated["amount"] == {"currency": "ofctbtc", "quantity": "250000000"}
    booked = json.loads(summary.split("What settle booked (XCom of settle):\n", 1)[1].split("=" * 72, 1)[0])
    # What matters on the terminal; Airflow's own log lines in the file the demo names.
    checks = [line for line in out.splitlines() if line.startswith("[demo]   check ")]
    assert [c.rsplit(" is ", 1)[1] for c in checks] == [
        "reserved (reason: awaiting partner confirmation)",
        "reserved (reason: awaiting partner confirmation)",
        "cleared",
    ]
    assert all(gated["id"] in c for c in checks)
    assert len(out.splitlines()) < 60
    log_path = out.rsplit("Airflow's full log of the run: ", 1)[1].strip()
    with open(log_path) as file:
        log = file.read()
    assert "wait_for_allocation" in log
    assert "Still waiting" in log  # the sensor's own log line went to the file, not the terminal
    assert "Still waiting" not in out
    assert booked == {"allocation_id": gated["id"], "status": "cleared", "currency": "ofctbtc", "quantity": "250000000"}

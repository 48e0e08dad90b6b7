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
    assert booked == {"allocation_id": gated["id"], "status": "cleared", "currency": "ofctbtc", "quantity": "250000000"}

"""The settlement reconciliation example DAG end to end with ``dag.test()`` against the simulator (reschedule mode)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration._dagrun import load_example_dag as _dag
from tests.integration._dagrun import task_states as _states
from tests.integration._dagrun import xcom_return_value as _xcom

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]

DAG_MODULE = "example_oes_settlement_reconciliation"
WINDOW_PARTNER = "3c3c3c3c-3c3c-4c3c-8c3c-3c3c3c3c3c3c"
LEGS: list[dict[str, Any]] = [
    {"currency": "ofctbtc", "quantity": "-100000000", "usd_value": "9500000"},
    {"currency": "ofctbtc", "quantity": "-12345678901234567890123", "usd_value": "1.5"},
    {"currency": "ofctusdt", "quantity": "95000000000", "usd_value": 9500000},
]
NETTED = {"ofctbtc": str(-100000000 - 12345678901234567890123), "ofctusdt": "95000000000"}


def _after_reads(sim: OESSimulator, settlement_id: str, steps: list[tuple[int, str, str | None]]) -> threading.Thread:
    """Move the settlement to each step's status once the API has answered that many requests (the first
    ``dag.test()`` of a process takes seconds to start: a timeline in seconds would be over before the first check)."""

    def run() -> None:
        deadline = time.monotonic() + 60
        for reads, status, reason in steps:
            while sim.request_count < reads and time.monotonic() < deadline:
                time.sleep(0.01)
            sim.set_settlement_status(settlement_id, status, reason)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _run(settlement_id: str, expected: dict[str, str]) -> Any:
    return _dag(DAG_MODULE).test(run_conf={"settlement_id": settlement_id, "expected_transfers": expected})


def test_a_v2_settlement_failed_then_completed_is_waited_for_and_reconciled(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60, top_up_window_minutes=15)
    settlement_id = oes_simulator.add_settlement(partner_id=WINDOW_PARTNER, transfers=LEGS, final_status="pending")
    script = _after_reads(oes_simulator, settlement_id, [(1, "failed", "node down"), (3, "completed", None)])
    dag_run = _run(settlement_id, NETTED)
    script.join(timeout=5)

    assert str(dag_run.state) == "success"
    assert _states(dag_run) == {
        "wait_for_settlement": "success",
        "reconcile": "success",
        "mismatched": "success",
        "alert": "skipped",
    }
    details = _xcom(dag_run, "wait_for_settlement")
    assert details["settlement"]["id"] == settlement_id
    assert details["settlement"]["status"] == "completed"
    assert [t["quantity"] for t in details["settlementTransfers"]] == [leg["quantity"] for leg in LEGS]
    assert [t["usdValue"] for t in details["settlementTransfers"]] == ["9500000", "1.5", "9500000"]
    assert _xcom(dag_run, "reconcile")["netted"] == NETTED
    assert _xcom(dag_run, "reconcile")["differences"] == {}
    # pending, failed twice (not final: waited through), then completed; each check one request
    assert oes_simulator.request_count == 4
    out = capsys.readouterr().out
    assert "node down" in out
    assert "not final" in out


def test_a_mismatch_raises_the_alert_with_the_differences(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    settlement_id = oes_simulator.add_settlement(transfers=LEGS)
    dag_run = _run(settlement_id, {"ofctbtc": "-100000000", "ofcteth": "5"})

    assert str(dag_run.state) == "success"
    assert _states(dag_run)["alert"] == "success"
    differences = _xcom(dag_run, "reconcile")["differences"]
    assert differences == {
        "ofctbtc": {"expected": "-100000000", "settled": NETTED["ofctbtc"]},
        "ofcteth": {"expected": "5", "settled": "0"},
        "ofctusdt": {"expected": "0", "settled": "95000000000"},
    }
    assert settlement_id in _xcom(dag_run, "alert")
    assert oes_simulator.request_count == 1  # a v1 settlement is final at the first check


def test_a_rejected_settlement_fails_the_sensor_at_once_with_the_reason(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settlement_id = oes_simulator.add_settlement(
        final_status="rejected", settlement_type="onchain", final_reason="counterparty address screening failed"
    )
    dag_run = _run(settlement_id, NETTED)

    assert str(dag_run.state) == "failed"
    assert _states(dag_run) == {
        "wait_for_settlement": "failed",
        "reconcile": "upstream_failed",
        "mismatched": "upstream_failed",
        "alert": "upstream_failed",
    }
    assert _xcom(dag_run, "wait_for_settlement") is None
    assert oes_simulator.request_count == 1  # final: no retry, no further check
    assert "counterparty address screening failed" in capsys.readouterr().out

"""Run the example DAGs end to end with ``dag.test()`` against the simulator over real HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration._dagrun import load_example_dag as _dag
from tests.integration._dagrun import task_instances
from tests.integration._dagrun import task_states as _states
from tests.integration._dagrun import xcom_return_value as _xcom

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]


def test_settlement_gating_clears_then_settles(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    allocation_id = oes_simulator.add_allocation(
        final_status="cleared", reserved_for_reads=2, quantity="1234567890123456789012345678901234567890"
    )
    dag_run = _dag("example_oes_settlement_gating").test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "success"
    assert _states(dag_run) == {"wait_for_allocation": "success", "settle": "success"}
    gated = _xcom(dag_run, "wait_for_allocation")
    assert gated["id"] == allocation_id
    assert gated["status"] == "cleared"
    assert gated["amount"]["quantity"] == "1234567890123456789012345678901234567890"
    assert _xcom(dag_run, "settle") == {
        "allocation_id": allocation_id,
        "status": "cleared",
        "currency": gated["amount"]["currency"],
        "quantity": "1234567890123456789012345678901234567890",
    }
    # Two reads while reserved, then the read that saw it cleared.
    assert oes_simulator.request_count == 3


def test_settlement_gating_released_fails_sensor_and_skips_settlement(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    allocation_id = oes_simulator.add_allocation(
        final_status="released", reserved_for_reads=1, final_reason="insufficient balance"
    )
    dag_run = _dag("example_oes_settlement_gating").test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "failed"
    assert _states(dag_run) == {"wait_for_allocation": "failed", "settle": "upstream_failed"}
    assert _xcom(dag_run, "wait_for_allocation") is None
    assert _xcom(dag_run, "settle") is None
    # Released is final: the sensor stops at the first read that sees it (no retries, no more polling).
    assert oes_simulator.request_count == 2


def test_settlement_gating_unknown_allocation_fails_without_retries(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    # The sensor has retries=2: a 404 will not go away within a retry delay, so Airflow must not use them.
    unknown = "0badc0de-0000-4000-8000-000000000000"
    dag_run = _dag("example_oes_settlement_gating").test(run_conf={"allocation_id": unknown})

    assert str(dag_run.state) == "failed"
    assert _states(dag_run) == {"wait_for_allocation": "failed", "settle": "upstream_failed"}
    sensor = task_instances(dag_run)["wait_for_allocation"]
    assert sensor.max_tries == 2  # retries were there to be used
    assert sensor.try_number == 1
    assert oes_simulator.request_count == 1


def test_reschedule_mode_clears(airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str) -> None:
    allocation_id = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=2)
    dag_run = _dag("example_oes_reschedule_released").test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "success"
    states = _states(dag_run)
    assert states["wait_for_allocation"] == "success"
    assert states["settle"] == "success"
    assert states["report_release"] == "skipped"
    assert _xcom(dag_run, "wait_for_allocation")["status"] == "cleared"
    assert oes_simulator.request_count == 3


def test_reschedule_mode_released_reports_reason(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    allocation_id = oes_simulator.add_allocation(
        final_status="released", reserved_for_reads=1, final_reason="partner rejected the allocation"
    )
    dag_run = _dag("example_oes_reschedule_released").test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "failed"
    assert _states(dag_run) == {
        "wait_for_allocation": "failed",
        "settle": "upstream_failed",
        "report_release": "success",
    }
    reported = _xcom(dag_run, "report_release")
    assert reported["id"] == allocation_id
    assert reported["status"] == "released"
    assert reported["reason"] == "partner rejected the allocation"


def test_mapped_sensors_total_exact_amounts(airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str) -> None:
    big = "9" * 45
    ids = [
        oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1, currency="ofctbtc", quantity=big),
        oes_simulator.add_allocation(final_status="cleared", currency="ofctbtc", quantity="1"),
        oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=2, currency="ofcteth", quantity="7"),
    ]
    dag_run = _dag("example_oes_mapped").test(run_conf={"allocation_ids": ids})

    assert str(dag_run.state) == "success"
    states = _states(dag_run)
    assert {k: v for k, v in states.items() if k.startswith("wait_for_allocation")} == {
        "wait_for_allocation[0]": "success",
        "wait_for_allocation[1]": "success",
        "wait_for_allocation[2]": "success",
    }
    assert [_xcom(dag_run, "wait_for_allocation", i)["id"] for i in range(3)] == ids
    assert _xcom(dag_run, "total_cleared") == {"ofctbtc": str(int(big) + 1), "ofcteth": "7"}

"""Run the example DAGs end to end with ``dag.test()`` against the simulator over real HTTP."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import EXAMPLE_DAGS

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]


def _dag(module: str) -> Any:
    """Import an example DAG file (from the configured DAGs folder, so dag.test() syncs it)."""
    path = EXAMPLE_DAGS / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"oes_example_{module}", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.dag


def _states(dag_run: Any) -> dict[str, str | None]:
    return {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (str(ti.state) if ti.state else None)
        for ti in dag_run.get_task_instances()
    }


def _xcom(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                map_indexes=map_index,
                key="return_value",
            )
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None


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

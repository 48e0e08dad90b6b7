"""Run the reconciliation example DAG (ListAllocationsOperator) end to end with ``dag.test()``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration._dagrun import load_example_dag, task_states, xcom_return_value

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]

DAY = datetime(2026, 11, 24, tzinfo=timezone.utc)


def test_reconcile_lists_the_window_and_totals_exactly(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    big = "9" * 40
    inside = [
        oes_simulator.add_allocation(final_status="released", quantity=big, created_at=DAY),
        oes_simulator.add_allocation(
            final_status="released", quantity="1", created_at=DAY + timedelta(hours=23, minutes=59)
        ),
        oes_simulator.add_allocation(
            final_status="released", currency="ofcteth", quantity="7", created_at=DAY + timedelta(hours=5)
        ),
    ]
    # Outside the window or not released: not listed.
    oes_simulator.add_allocation(final_status="released", created_at=DAY - timedelta(seconds=1))
    # (createdBefore's bound itself is left out of the test: the spec's text says "on or before".)
    oes_simulator.add_allocation(final_status="released", created_at=DAY + timedelta(days=1, seconds=1))
    oes_simulator.add_allocation(final_status="cleared", created_at=DAY + timedelta(hours=1))

    dag_run = load_example_dag("example_oes_reconcile_released").test(
        run_conf={"since": "2026-11-24T00:00:00Z", "until": "2026-11-25T00:00:00Z"}
    )

    assert str(dag_run.state) == "success"
    assert task_states(dag_run) == {"list_released": "success", "report": "success"}
    listed = xcom_return_value(dag_run, "list_released")
    assert [record["id"] for record in listed] == [inside[0], inside[2], inside[1]]  # creation order
    assert listed[0] == oes_simulator.get_record(inside[0])
    assert xcom_return_value(dag_run, "report") == {
        "released": 3,
        "totals": {"ofctbtc": str(int(big) + 1), "ofcteth": "7"},
        "reasons": ["insufficient balance"],
    }

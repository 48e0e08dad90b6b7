"""Sensor and operator outlets: the allocation lands in the asset event's ``extra``, in every sensor mode.

``dag.test()`` runs ``example_oes_allocation_outlets`` against the simulator; the asset events are read back
from the metadata DB (what the scheduler hands a DAG scheduled on the asset as ``triggering_asset_events``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration._dagrun import load_example_dag as _dag
from tests.integration._dagrun import task_states as _states

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]

GATED_URI = "oes://sim-enterprise/allocations/gated"
AUDIT_URI = "oes://sim-enterprise/allocations/fetched"


def _asset_events(dag_run: Any, uri: str) -> list[dict[str, Any]]:
    """The ``extra`` of every asset event the run produced for the asset ``uri``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        return [dict(row.extra or {}) for row in rows]


def _producer(mode: str) -> Any:
    dag = _dag("example_oes_allocation_outlets")
    sensor = dag.get_task("wait_for_allocation")
    if mode == "deferrable":
        sensor.deferrable = True
    else:
        sensor.mode = mode
    return dag


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_and_operator_put_the_allocation_on_their_outlets(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str, mode: str
) -> None:
    allocation_id = oes_simulator.add_allocation(
        final_status="cleared",
        reserved_for_reads=1,
        currency="ofcteth",
        quantity="98765432109876543210987654321",
    )
    dag_run = _producer(mode).test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "success"
    assert _states(dag_run) == {"wait_for_allocation": "success", "record_allocation": "success"}
    record = oes_simulator.get_record(allocation_id)
    expected_allocation = {
        "id": allocation_id,
        "type": record["type"],
        "status": "cleared",
        "amount": {"currency": "ofcteth", "quantity": "98765432109876543210987654321"},
        "connectionId": record["connectionId"],
        "reason": record.get("reason"),
    }
    expected = {"allocation": expected_allocation, "enterprise_id": "sim-enterprise", "oes_conn_id": "oes_default"}
    assert _asset_events(dag_run, GATED_URI) == [expected]
    assert _asset_events(dag_run, AUDIT_URI) == [expected]


def test_released_allocation_publishes_no_gated_event(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    allocation_id = oes_simulator.add_allocation(final_status="released", reserved_for_reads=1)
    dag_run = _producer("poke").test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "failed"
    assert _states(dag_run) == {"wait_for_allocation": "failed", "record_allocation": "upstream_failed"}
    # A failed task registers no outlet event: a DAG scheduled on GATED never sees a released allocation.
    assert _asset_events(dag_run, GATED_URI) == []
    assert _asset_events(dag_run, AUDIT_URI) == []

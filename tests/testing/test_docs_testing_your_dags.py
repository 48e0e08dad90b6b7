"""The code of the docs page "Testing your own DAGs" (docs/testing.rst includes it from here).

What a user writes in their own test suite with the provider's pytest plugin (``oes_simulator``,
``oes_connection``) and :mod:`airflow_provider_oes.testing.connections`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration._dagrun import load_example_dag

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator


# [START howto_test_fixture]
@pytest.fixture
def oes_conn(oes_simulator: OESSimulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Point any connection id at the simulator: ``oes_conn("treasury_oes", max_retries=0)``."""

    from airflow_provider_oes.testing.connections import oes_connection_env

    def connect(conn_id: str = "oes_default", **extras: Any) -> str:
        env = oes_connection_env(
            conn_id,
            host=oes_simulator.url,
            token=oes_simulator.token,
            enterprise_id=oes_simulator.enterprise_id,
            **extras,
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # Airflow reads AIRFLOW_CONN_<ID> outside a task: no DB needed
        return conn_id

    return connect


# [END howto_test_fixture]


# [START howto_test_sensor]
def test_sensor_waits_for_cleared(oes_simulator: OESSimulator, oes_conn: Callable[..., str]) -> None:
    from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

    conn_id = oes_conn("treasury_oes", max_retries=0)
    allocation_id = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1, quantity="42")
    sensor = AllocationStatusSensor(
        task_id="wait", allocation_id=allocation_id, oes_conn_id=conn_id, poke_interval=0.1, timeout=30
    )

    allocation = sensor.execute({})  # poke mode works with an empty context

    assert allocation["status"] == "cleared"
    assert allocation["amount"]["quantity"] == "42"
    assert oes_simulator.request_count == 2  # reserved once, then cleared


# [END howto_test_sensor]


# [START howto_test_dag_test]
def test_settlement_dag_end_to_end(airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str) -> None:
    allocation_id = oes_simulator.add_allocation(final_status="cleared", quantity="250000000")
    dag = load_example_dag("example_oes_settlement_gating")  # a DAG file in the configured dags folder

    dag_run = dag.test(run_conf={"allocation_id": allocation_id})

    assert str(dag_run.state) == "success"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states == {"wait_for_allocation": "success", "settle": "success"}


# [END howto_test_dag_test]

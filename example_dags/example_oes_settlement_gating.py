"""Example 1: gate a settlement task on a BitGo OES allocation clearing.

What it shows
-------------
A treasury pipeline must not settle until BitGo reports the client allocation as ``cleared``.

1. ``wait_for_allocation`` (:class:`~airflow_provider_oes.sensors.allocation.AllocationStatusSensor`)
   asks BitGo for the allocation every ``poke_interval`` seconds. While it is ``reserved`` it keeps
   waiting; on ``cleared`` it succeeds and pushes the allocation (the API's JSON) to XCom; on
   ``released`` it fails, so nothing downstream runs.
2. ``settle`` receives that allocation from XCom (``wait.output``) and does the settlement work. Here it
   only builds a summary; amounts stay base-unit *strings*, never floats.

How to run it
-------------
* Create an Airflow connection ``oes_default`` of type "BitGo OES" (host, access token, enterprise id),
  or point it at the local simulator: ``python -m airflow_provider_oes.testing.simulator --seed-demo``.
* Trigger the DAG from the UI ("Trigger DAG" asks for ``allocation_id``) or the CLI::

      airflow dags trigger oes_settlement_gating --conf '{"allocation_id": "<uuid>"}'

Within BitGo's rate limit (360 requests per 60 s per token): one sensor poking every 10 s sends 6 requests a
minute, and ``max_active_runs=5`` bounds this DAG to 30. ``retries=2`` covers what a retry can fix (a lost
worker, a 401 while the token is rotated: each try reads the connection again); ``released`` and the
permanent answers 400/403/404 fail at once without using them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

with DAG(
    dag_id="oes_settlement_gating",
    description="Wait for a BitGo OES allocation to clear, then settle.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=5,
    tags=["oes", "example"],
    params={
        "allocation_id": Param(
            "00000000-0000-0000-0000-000000000000",
            type="string",
            description="UUID of the BitGo OES allocation to wait for.",
        ),
    },
) as dag:
    # [START howto_sensor_allocation_status]
    wait = AllocationStatusSensor(
        task_id="wait_for_allocation",
        allocation_id="{{ params.allocation_id }}",
        # enterprise_id is not given: the connection's enterprise_id extra is used.
        oes_conn_id="oes_default",
        poke_interval=10,
        timeout=timedelta(minutes=30).total_seconds(),
        mode="poke",
        retries=2,
        retry_delay=timedelta(seconds=30),
    )
    # [END howto_sensor_allocation_status]

    # One XCom (return_value) with the whole dict, not one XCom per key.
    @task(multiple_outputs=False)
    def settle(allocation: dict[str, Any]) -> dict[str, str]:
        """Settle against the cleared allocation (here: return what would be booked)."""
        amount = allocation["amount"]
        summary = {
            "allocation_id": allocation["id"],
            "status": allocation["status"],
            "currency": amount["currency"],
            "quantity": amount["quantity"],  # base units, kept as the exact string BitGo sent
        }
        print(f"Settling {summary['quantity']} {summary['currency']} for allocation {summary['allocation_id']}")
        return summary

    settle(wait.output)

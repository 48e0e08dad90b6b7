"""Example 6: tasks publish the allocation they gated on as an asset event; another DAG runs on it.

What it shows
-------------
* ``wait_for_allocation`` (:class:`~airflow_provider_oes.sensors.allocation.AllocationStatusSensor`) has
  ``outlets=[GATED]``. When the allocation clears, Airflow records an asset event for ``GATED`` whose
  ``extra`` carries the allocation: ``{"allocation": {"id", "type", "status", "amount", "connectionId",
  "reason"}, "enterprise_id": ..., "oes_conn_id": ...}``. This works in poke, reschedule and deferrable mode
  (deferrable: attached when the task resumes on a worker).
* ``record_allocation`` (:class:`~airflow_provider_oes.operators.allocation.GetAllocationOperator`) does the
  same for ``AUDIT``, whatever the status.
* ``oes_settle_gated_allocation`` is scheduled on ``GATED``: it reads which allocation started it from
  ``triggering_asset_events`` with :func:`~airflow_provider_oes.assets.allocations_from_asset_event`.

The asset URIs follow ``oes://<enterprise id>/allocations/<what>``; the enterprise id is read from the
``OES_ENTERPRISE_ID`` environment variable here (default: the local simulator's), because an asset's URI must
be known when the DAG file is parsed.

Trigger the producer with ``--conf '{"allocation_id": "<uuid>"}'``. Within BitGo's rate limit: one check
every 5 s (12 requests a minute) per run, at most 2 runs at once.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_oes.assets import allocations_asset_uri, allocations_from_asset_event
from airflow_provider_oes.operators.allocation import GetAllocationOperator
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

ENTERPRISE_ID = os.environ.get("OES_ENTERPRISE_ID", "sim-enterprise")
GATED = Asset(name="oes_gated_allocations", uri=allocations_asset_uri(ENTERPRISE_ID, "gated"))
AUDIT = Asset(name="oes_fetched_allocations", uri=allocations_asset_uri(ENTERPRISE_ID, "fetched"))

with DAG(
    dag_id="oes_gate_with_outlets",
    description="Gate on an allocation and publish it as an asset event.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,
    tags=["oes", "example"],
    params={"allocation_id": Param("00000000-0000-0000-0000-000000000000", type="string")},
) as dag:
    # [START howto_sensor_allocation_outlets]
    wait = AllocationStatusSensor(
        task_id="wait_for_allocation",
        allocation_id="{{ params.allocation_id }}",
        poke_interval=5,
        timeout=600,
        mode="poke",
        deferrable=False,
        outlets=[GATED],
    )
    record = GetAllocationOperator(
        task_id="record_allocation",
        allocation_id="{{ params.allocation_id }}",
        outlets=[AUDIT],
    )
    wait >> record
    # [END howto_sensor_allocation_outlets]


with DAG(
    dag_id="oes_settle_gated_allocation",
    description="Runs when a gated allocation cleared; settles the allocation named by the asset event.",
    schedule=[GATED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oes", "example"],
) as consumer_dag:

    @task
    def settle(triggering_asset_events: Any = None) -> list[dict[str, str]]:
        """Settle every allocation carried by the events that started this run."""
        settled = []
        for event in triggering_asset_events[GATED]:
            for allocation in allocations_from_asset_event(event):
                amount = allocation["amount"]
                print(f"Settling {amount['quantity']} {amount['currency']} for allocation {allocation['id']}")
                settled.append({"id": allocation["id"], "quantity": amount["quantity"]})
        return settled

    settle()

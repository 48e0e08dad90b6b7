"""Example 3: wait for several allocations at once with dynamic task mapping.

What it shows
-------------
* ``list_allocation_ids`` returns the ids to wait for (here from the run's ``conf``; in real pipelines
  typically from the upstream task that created the allocations).
* ``wait_for_allocation`` is :class:`AllocationStatusSensor` mapped over those ids with
  ``.partial(...).expand(allocation_id=...)``: one sensor instance per allocation.
* ``total_cleared`` receives every cleared allocation (a list, from XCom) and totals the amounts per
  currency with Python integers, so a 40-digit base-unit quantity stays exact. Totals are returned as
  strings, the same encoding BitGo uses.

Within BitGo's rate limit (360 requests per 60 s per token): the sensors poke in worker slots, each one
request every ``poke_interval``, with no limiter shared between them. ``max_active_tis_per_dagrun=4`` lets
at most 4 of them poke at once and ``max_active_runs=1`` one run at a time: at most 4 x 12 = 48 requests a
minute, however many ids a run gets. For hundreds of allocations use deferrable sensors (example 4).

Trigger it with ``--conf '{"allocation_ids": ["<uuid>", "<uuid>", ...]}'``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

with DAG(
    dag_id="oes_mapped_allocations",
    description="Wait for many OES allocations with dynamic task mapping, then total them.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["oes", "example"],
    params={"allocation_ids": Param([], type="array")},
) as dag:

    @task
    def list_allocation_ids(**context: Any) -> list[str]:
        """The allocations this run must wait for."""
        return list(context["params"]["allocation_ids"])

    # [START howto_sensor_allocation_status_mapped]
    waits = AllocationStatusSensor.partial(
        task_id="wait_for_allocation",
        poke_interval=5,
        timeout=3600,
        max_active_tis_per_dagrun=4,  # at most 4 sensors poking at once: 48 requests a minute
    ).expand(allocation_id=list_allocation_ids())
    # [END howto_sensor_allocation_status_mapped]

    # One XCom (return_value) with the whole dict, not one XCom per key.
    @task(multiple_outputs=False)
    def total_cleared(allocations: list[dict[str, Any]]) -> dict[str, str]:
        """Total the cleared amounts per currency, exactly (integers, never floats)."""
        totals: dict[str, int] = {}
        for allocation in allocations:
            amount = allocation["amount"]
            totals[amount["currency"]] = totals.get(amount["currency"], 0) + int(amount["quantity"])
        return {currency: str(total) for currency, total in sorted(totals.items())}

    total_cleared(waits.output)

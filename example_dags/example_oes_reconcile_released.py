"""Example 5: reconcile the allocations BitGo released in a time window.

What it shows
-------------
* ``list_released`` is :class:`ListAllocationsOperator`: it pages through BitGo's list endpoint for the
  ``released`` allocations created in ``[since, until)`` and pushes them to XCom, in the API's JSON shape.
  (For big windows set ``output_path`` to write JSON Lines to a file instead: XCom lives in the metadata DB.)
* ``report`` totals them per currency with Python integers (base units stay exact) and lists the reasons.

Scheduled daily, ``since``/``until`` would be ``"{{ data_interval_start }}"``/``"{{ data_interval_end }}"``;
here they are run parameters: trigger it with
``--conf '{"since": "2026-11-24T00:00:00Z", "until": "2026-11-25T00:00:00Z"}'``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_oes.operators.allocation import ListAllocationsOperator

with DAG(
    dag_id="oes_reconcile_released",
    description="List the OES allocations released in a window and total them per currency.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oes", "example"],
    params={
        "since": Param("2026-11-24T00:00:00Z", type="string", description="created on or after (ISO 8601)"),
        "until": Param("2026-11-25T00:00:00Z", type="string", description="created before (ISO 8601)"),
    },
) as dag:
    # [START howto_operator_list_allocations]
    released = ListAllocationsOperator(
        task_id="list_released",
        statuses=["released"],
        created_on_or_after="{{ params.since }}",
        created_before="{{ params.until }}",
        page_size=500,
        max_records=10_000,
    )
    # [END howto_operator_list_allocations]

    # One XCom (return_value) with the whole dict, not one XCom per key.
    @task(multiple_outputs=False)
    def report(allocations: list[dict[str, Any]]) -> dict[str, Any]:
        """Totals per currency (exact integers, returned as strings) and the reasons BitGo gave."""
        totals: dict[str, int] = {}
        for allocation in allocations:
            amount = allocation["amount"]
            totals[amount["currency"]] = totals.get(amount["currency"], 0) + int(amount["quantity"])
        return {
            "released": len(allocations),
            "totals": {currency: str(total) for currency, total in sorted(totals.items())},
            "reasons": sorted({str(allocation.get("reason")) for allocation in allocations}),
        }

    report(released.output)

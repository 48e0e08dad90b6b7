"""Example 4: wait for a whole fleet of OES allocations in the triggerer, not in worker slots.

What it shows
-------------
* ``allocation_ids`` comes from the run's params (``dag_run.conf`` overrides it). In a real pipeline it is
  usually the output of the task that created the allocations.
* ``wait_for_allocation`` is :class:`AllocationStatusSensor` with ``deferrable=True``, mapped over the ids
  with ``.partial(...).expand(allocation_id=...)``. Each mapped sensor checks once; if the allocation is
  still ``reserved`` it *defers*: it frees its worker slot and hands the wait to the triggerer.
* In the triggerer, all these waits share **one** poller per connection and enterprise: by default it reads
  the enterprise's change feed (the newest final allocations, once per ``poke_interval``: about one request
  per interval whatever the number waiting; the ``poll_strategy`` extra selects id batches or single GETs
  instead), and never sends more than the connection's rate limit (default 360 requests per 60 s, BitGo's
  limit for one user). For big fleets see ``start_from_trigger`` in the docs ("Fleets").
* When an allocation is ``cleared`` the mapped task succeeds and pushes the allocation (the API's own
  JSON) to XCom. With ``end_from_trigger=True`` the trigger does that itself: the task ends in the
  triggerer and no worker runs again for it (``docs/fleets-end-from-trigger.rst`` lists when a sensor still
  resumes on a worker). ``released`` resumes on a worker, which fails that task at once (no retries) with
  BitGo's reason, so ``settle_cleared`` below runs only when every allocation cleared (its default trigger
  rule).
* ``timeout`` bounds the wait in deferrable mode too.

Running it
----------
1. A connection ``oes_default`` of type ``oes``: Host ``https://app.bitgo.com`` (or the local simulator,
   ``python -m airflow_provider_oes.testing.simulator --port 8080 --seed-demo``, with Host
   ``http://127.0.0.1:8080`` and Password ``sim-token``), Password the access token, extra
   ``enterprise_id``.
2. A running triggerer (``airflow triggerer``). For big fleets raise ``[triggerer] capacity`` (default
   1,000 triggers per triggerer).
3. Trigger with ``--conf '{"allocation_ids": ["<uuid>", "<uuid>", ...]}'``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

with DAG(
    dag_id="oes_deferrable_fleet",
    description="Wait for many OES allocations with deferrable sensors sharing one batched poller.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oes", "example", "deferrable"],
    params={
        "allocation_ids": Param([], type="array", description="UUIDs of the allocations to wait for."),
    },
) as dag:

    @task
    def list_allocation_ids(**context: Any) -> list[str]:
        """The allocations this run waits for."""
        return [str(allocation_id) for allocation_id in context["params"]["allocation_ids"]]

    # [START howto_sensor_allocation_status_deferrable]
    waits = AllocationStatusSensor.partial(
        task_id="wait_for_allocation",
        deferrable=True,
        # On cleared, the trigger ends the task with the allocation as its XCom: no worker resume.
        end_from_trigger=True,
        poke_interval=5,
        timeout=6 * 3600,
        retries=0,
    ).expand(allocation_id=list_allocation_ids())
    # [END howto_sensor_allocation_status_deferrable]

    # One XCom (return_value) with the whole dict, not one XCom per key.
    @task(multiple_outputs=False)
    def settle_cleared(allocations: list[dict[str, Any]]) -> dict[str, Any]:
        """Runs once every allocation cleared: here, count them and total the amounts exactly (integers)."""
        totals: dict[str, int] = {}
        for allocation in allocations:
            amount = allocation["amount"]
            totals[amount["currency"]] = totals.get(amount["currency"], 0) + int(amount["quantity"])
        return {"cleared": len(allocations), "totals": {c: str(t) for c, t in sorted(totals.items())}}

    settle_cleared(waits.output)

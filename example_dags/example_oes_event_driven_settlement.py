"""Example 7: event-driven settlement: a DAG run whenever allocations of the enterprise become final.

What it shows
-------------
No sensor waits and no allocation id is known in advance. The triggerer watches the enterprise's change feed:

* ``CLEARED`` (``oes://<enterprise id>/allocations/cleared``) is watched by an
  :class:`~airflow_provider_oes.triggers.event.AllocationEventTrigger` for ``cleared`` allocations. Each poll
  that finds newly cleared allocations records **one** asset event carrying all of them.
* ``oes_event_driven_settlement`` is scheduled on ``CLEARED``: ``cleared_allocations`` reads the allocations
  from the run's triggering asset events (Airflow may put several events into one run), and ``settle`` is
  mapped over them: one task instance per allocation.
* ``RELEASED`` and ``oes_event_driven_release_alert`` do the same for ``released`` allocations (alerting:
  the funds went back, someone should look at BitGo's reason).

Each allocation is emitted once, also across triggerer restarts (Airflow 3.3; see the README section
"Event-driven settlement" for the exact guarantee), except after a triggerer crash in the second between
Airflow storing an event and the trigger learning it did: those allocations are emitted again.
:func:`~airflow_provider_oes.assets.new_allocations` leaves out allocations an earlier event of the asset
carried, so each is settled by exactly one run; settle idempotently by allocation id all the same.

Both DAGs start paused (``is_paused_upon_creation``): Airflow runs an asset's watcher only while a DAG
scheduled on the asset is unpaused, so watching starts when you unpause them.

Configuration (asset URIs must be known when the file is parsed, so they come from the environment here):
``OES_ENTERPRISE_ID`` (default: the local simulator's ``sim-enterprise``) and ``OES_EVENT_POLL_INTERVAL``
(seconds, default 10). The connection is ``oes_default``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_oes.assets import allocations_asset_uri, new_allocations
from airflow_provider_oes.triggers.event import AllocationEventTrigger

ENTERPRISE_ID = os.environ.get("OES_ENTERPRISE_ID", "sim-enterprise")
POLL_INTERVAL = float(os.environ.get("OES_EVENT_POLL_INTERVAL", "10"))

# [START howto_trigger_allocation_event]
CLEARED = Asset(
    name="oes_cleared_allocations",
    uri=allocations_asset_uri(ENTERPRISE_ID, "cleared"),
    watchers=[
        AssetWatcher(
            name="oes_cleared_watcher",
            trigger=AllocationEventTrigger(
                enterprise_id=ENTERPRISE_ID, statuses=["cleared"], poll_interval=POLL_INTERVAL
            ),
        )
    ],
)
RELEASED = Asset(
    name="oes_released_allocations",
    uri=allocations_asset_uri(ENTERPRISE_ID, "released"),
    watchers=[
        AssetWatcher(
            name="oes_released_watcher",
            trigger=AllocationEventTrigger(
                enterprise_id=ENTERPRISE_ID, statuses=["released"], poll_interval=POLL_INTERVAL
            ),
        )
    ],
)
# [END howto_trigger_allocation_event]


def _allocations(asset: Asset, status: str, triggering_asset_events: Any, inlet_events: Any) -> list[dict[str, Any]]:
    """The allocations of the run's triggering events, each once, leaving out any an earlier event carried.

    A watcher emits an allocation a second time only after a triggerer crash at the wrong second; without this,
    that allocation would be settled by two runs.
    """
    found = new_allocations(asset, triggering_asset_events, inlet_events)
    for allocation in found:
        if allocation.get("status") != status:  # trust nothing but the status the asset stands for
            raise ValueError(f"allocation {allocation.get('id')} is {allocation.get('status')!r}, not {status}")
    return found


with DAG(
    dag_id="oes_event_driven_settlement",
    description="Settle every allocation of the enterprise as soon as BitGo reports it cleared.",
    schedule=[CLEARED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Money moves on this DAG's runs: it starts paused, and watching begins when someone unpauses it.
    is_paused_upon_creation=True,
    tags=["oes", "example", "event-driven"],
) as dag:
    # [START howto_event_driven_settle]
    # The asset is also an inlet, so that the task may read its earlier events (inlet_events).
    @task(inlets=[CLEARED])
    def cleared_allocations(triggering_asset_events: Any = None, inlet_events: Any = None) -> list[dict[str, Any]]:
        """The cleared allocations that started this run (and no earlier run)."""
        return _allocations(CLEARED, "cleared", triggering_asset_events, inlet_events)

    # Explicit, as Airflow infers it from the dict annotation (ruff's AIR rule asks not to rely on inference).
    @task(multiple_outputs=True)
    def settle(allocation: dict[str, Any]) -> dict[str, str]:
        """Book the settlement of one cleared allocation (idempotently, keyed by its id, in real life)."""
        amount = allocation["amount"]
        print(f"Settling {amount['quantity']} {amount['currency']} for allocation {allocation['id']}")
        return {"id": allocation["id"], "currency": amount["currency"], "quantity": amount["quantity"]}

    settle.expand(allocation=cleared_allocations())
    # [END howto_event_driven_settle]


with DAG(
    dag_id="oes_event_driven_release_alert",
    description="Alert on every allocation of the enterprise that BitGo released.",
    schedule=[RELEASED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["oes", "example", "event-driven"],
) as alert_dag:

    @task(inlets=[RELEASED])
    def alert(triggering_asset_events: Any = None, inlet_events: Any = None) -> list[dict[str, Any]]:
        """Report each released allocation with BitGo's reason (here: log it; in real life, page someone)."""
        released = _allocations(RELEASED, "released", triggering_asset_events, inlet_events)
        for allocation in released:
            print(f"ALERT: allocation {allocation['id']} was released: {allocation.get('reason')}")
        return [{"id": a["id"], "reason": a.get("reason")} for a in released]

    alert()

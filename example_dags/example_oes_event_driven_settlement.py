"""Example 6: event-driven settlement: a DAG run whenever allocations of the enterprise become final.

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
"Event-driven settlement" for the exact guarantee). Settle idempotently by allocation id all the same: that is
what makes the rare duplicate after a crash harmless.

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

from airflow_provider_oes.assets import allocations_asset_uri, allocations_from_asset_event
from airflow_provider_oes.triggers.event import AllocationEventTrigger

ENTERPRISE_ID = os.environ.get("OES_ENTERPRISE_ID", "sim-enterprise")
POLL_INTERVAL = float(os.environ.get("OES_EVENT_POLL_INTERVAL", "10"))

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


def _allocations(events: Any, status: str) -> list[dict[str, Any]]:
    """The allocations of the run's triggering events, each once, in the order they became final."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        for allocation in allocations_from_asset_event(event):
            if allocation.get("status") != status:  # trust nothing but the status the asset stands for
                raise ValueError(f"allocation {allocation.get('id')} is {allocation.get('status')!r}, not {status}")
            found.setdefault(allocation["id"], allocation)
    return list(found.values())


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

    @task
    def cleared_allocations(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """The cleared allocations that started this run."""
        return _allocations(triggering_asset_events[CLEARED], "cleared")

    # Explicit, as Airflow infers it from the dict annotation (ruff's AIR rule asks not to rely on inference).
    @task(multiple_outputs=True)
    def settle(allocation: dict[str, Any]) -> dict[str, str]:
        """Book the settlement of one cleared allocation (idempotently, keyed by its id, in real life)."""
        amount = allocation["amount"]
        print(f"Settling {amount['quantity']} {amount['currency']} for allocation {allocation['id']}")
        return {"id": allocation["id"], "currency": amount["currency"], "quantity": amount["quantity"]}

    settle.expand(allocation=cleared_allocations())


with DAG(
    dag_id="oes_event_driven_release_alert",
    description="Alert on every allocation of the enterprise that BitGo released.",
    schedule=[RELEASED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["oes", "example", "event-driven"],
) as alert_dag:

    @task
    def alert(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Report each released allocation with BitGo's reason (here: log it; in real life, page someone)."""
        released = _allocations(triggering_asset_events[RELEASED], "released")
        for allocation in released:
            print(f"ALERT: allocation {allocation['id']} was released: {allocation.get('reason')}")
        return [{"id": a["id"], "reason": a.get("reason")} for a in released]

    alert()

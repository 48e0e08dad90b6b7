"""Example 7: event-driven settlement: a DAG run whenever allocations of the enterprise become final.

What it shows
-------------
No sensor waits and no allocation id is known in advance. The triggerer watches the enterprise's change feed:

* ``CLEARED`` (``oes://<enterprise id>/allocations/cleared``) is watched by an
  :class:`~airflow_provider_oes.triggers.event.AllocationEventTrigger` for ``cleared`` allocations. Each poll
  that finds newly cleared allocations records **one** asset event carrying all of them.
* ``oes_event_driven_settlement`` is scheduled on ``CLEARED``: ``cleared_allocations`` reads the allocations
  from the run's triggering asset events (Airflow may put several events into one run), and ``settle`` is
  mapped over them: one task instance per allocation, or per batch of allocations when a run carries more
  than ``[core] max_map_length`` (1,024) of them (a backlog after a long pause), so such a run still runs.
* ``RELEASED`` and ``oes_event_driven_release_alert`` do the same for ``released`` allocations (alerting:
  the funds went back, someone should look at BitGo's reason).

Each allocation is emitted once, also across triggerer restarts (Airflow 3.3; see the README section
"Event-driven settlement" for the exact guarantee), except after a triggerer crash in the second between
Airflow storing an event and the trigger learning it did: those allocations are emitted again.
:func:`~airflow_provider_oes.assets.new_allocations` leaves out an allocation another run of the DAG took on
(matched on id, status and ``updatedAt``; records of other statuses, e.g. a ``reserved`` one another producer
attached, are logged and left out), so each is settled by exactly one run; settle idempotently by allocation
id all the same. With ``acknowledge=True`` it also records, in the asset's state store (Airflow 3.3+), each
allocation the run took on (see ``docs/event-driven-acknowledgements.rst``).

If a run fails, its allocations stay with it: they are acknowledged by that run, so no other run settles them
and a watcher does not re-emit them. Clear the failed run (or its failed tasks): ``cleared_allocations``
returns the same allocations again (its own acknowledgements) and ``settle`` retries them.

Both DAGs start paused (``is_paused_upon_creation``): Airflow runs an asset's watcher only while a DAG
scheduled on the asset is unpaused, so watching starts when you unpause them.

Configuration (asset URIs must be known when the file is parsed, so they come from the environment here):
``OES_ENTERPRISE_ID`` (default: the local simulator's ``sim-enterprise``), ``OES_EVENT_POLL_INTERVAL``
(seconds, default 10), ``OES_MAX_ALLOCATIONS_PER_EVENT`` (default: the trigger's, 500) and
``OES_REDELIVER_AFTER`` (seconds before the cleared watcher emits again what no settlement run acknowledged,
default 600). The connection is ``oes_default``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_oes.assets import allocations_asset_uri, new_allocations
from airflow_provider_oes.triggers.event import DEFAULT_REDELIVER_AFTER, AllocationEventTrigger

ENTERPRISE_ID = os.environ.get("OES_ENTERPRISE_ID", "sim-enterprise")
POLL_INTERVAL = float(os.environ.get("OES_EVENT_POLL_INTERVAL", "10"))
# Unset (or empty): the trigger's own defaults.
MAX_ALLOCATIONS_PER_EVENT = int(os.environ.get("OES_MAX_ALLOCATIONS_PER_EVENT") or 0) or None
REDELIVER_AFTER = float(os.environ.get("OES_REDELIVER_AFTER") or DEFAULT_REDELIVER_AFTER)

# [START howto_trigger_allocation_event]
CLEARED = Asset(
    name="oes_cleared_allocations",
    uri=allocations_asset_uri(ENTERPRISE_ID, "cleared"),
    watchers=[
        AssetWatcher(
            name="oes_cleared_watcher",
            trigger=AllocationEventTrigger(
                enterprise_id=ENTERPRISE_ID,
                statuses=["cleared"],
                poll_interval=POLL_INTERVAL,
                max_allocations_per_event=MAX_ALLOCATIONS_PER_EVENT,
                # Emit again what no run of the settlement DAG acknowledged (new_allocations(acknowledge=True)).
                acknowledged_by=["oes_event_driven_settlement"],
                redeliver_after=REDELIVER_AFTER,
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
                enterprise_id=ENTERPRISE_ID,
                statuses=["released"],
                poll_interval=POLL_INTERVAL,
                max_allocations_per_event=MAX_ALLOCATIONS_PER_EVENT,
            ),
        )
    ],
)
# [END howto_trigger_allocation_event]


def _allocations(
    asset: Asset,
    status: str,
    triggering_asset_events: Any,
    inlet_events: Any,
    dag_run: Any,
    asset_state_store: Any,
) -> list[dict[str, Any]]:
    """The ``status`` allocations of the run's triggering events that no other run took on, each once.

    Records of any other status (another producer attaching a ``reserved`` allocation to the asset, say) are
    logged and left out: they neither fail the run nor stand for a delivery. Each allocation returned is
    acknowledged in the asset's state store (Airflow 3.3+), so the watcher can re-emit what no run took on.
    """
    return new_allocations(
        asset,
        triggering_asset_events,
        inlet_events,
        statuses=[status],
        acknowledge=True,
        context={"dag_run": dag_run, "asset_state_store": asset_state_store},
    )


def _batches(allocations: list[dict[str, Any]], max_map_length: int | None = None) -> list[list[dict[str, Any]]]:
    """Split ``allocations`` into as few equal batches as keep one task instance per batch within ``[core]
    max_map_length`` (1,024 by default): one allocation per batch up to that many, more per batch beyond.

    A backlog (a long pause, a burst) then still runs, instead of failing the whole run at mapping time.
    """
    if max_map_length is None:
        from airflow.sdk import conf

        max_map_length = conf.getint("core", "max_map_length")
    per_batch = max(1, -(-len(allocations) // max(1, max_map_length)))
    return [allocations[i : i + per_batch] for i in range(0, len(allocations), per_batch)]


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
    # The asset is also an inlet, so that the task may read its earlier events (inlet_events) and its state
    # store (asset_state_store, where the run acknowledges what it took on).
    @task(inlets=[CLEARED])
    def cleared_allocations(
        triggering_asset_events: Any = None,
        inlet_events: Any = None,
        dag_run: Any = None,
        asset_state_store: Any = None,
    ) -> list[list[dict[str, Any]]]:
        """The cleared allocations that started this run (and no other run), in batches ``settle`` maps over."""
        found = _allocations(CLEARED, "cleared", triggering_asset_events, inlet_events, dag_run, asset_state_store)
        return _batches(found)

    @task
    def settle(allocations: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Book the settlement of a batch of cleared allocations (idempotently, keyed by id, in real life)."""
        settled = []
        for allocation in allocations:
            amount = allocation["amount"]
            print(f"Settling {amount['quantity']} {amount['currency']} for allocation {allocation['id']}")
            settled.append({"id": allocation["id"], "currency": amount["currency"], "quantity": amount["quantity"]})
        return settled

    settle.expand(allocations=cleared_allocations())
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
    def alert(
        triggering_asset_events: Any = None,
        inlet_events: Any = None,
        dag_run: Any = None,
        asset_state_store: Any = None,
    ) -> list[dict[str, Any]]:
        """Report each released allocation with BitGo's reason (here: log it; in real life, page someone)."""
        released = _allocations(RELEASED, "released", triggering_asset_events, inlet_events, dag_run, asset_state_store)
        for allocation in released:
            print(f"ALERT: allocation {allocation['id']} was released: {allocation.get('reason')}")
        return [{"id": a["id"], "reason": a.get("reason")} for a in released]

    alert()

"""Example 10: event-driven settlement review: reconcile each new settlement before its dispute window closes.

What it shows
-------------
No settlement id is known in advance. The triggerer watches the enterprise's settlements:

* ``NEW_SETTLEMENTS`` (``oes://<enterprise id>/settlements/pending``) is watched by a
  :class:`~airflow_provider_oes.triggers.settlement_event.SettlementEventTrigger` for ``pending`` settlements:
  each poll that finds new ones records one asset event carrying all of them, each with
  ``disputeWindowEndsAt`` (``createdAt`` + the partner's ``clientDisputeWindowMinutes``; ``null`` for a
  partner without disputes).
* ``oes_settlement_review`` runs on it: ``to_review`` takes the run's new settlements (each once, see
  below), ``reconcile`` reads each one's transfers (one GET per settlement) and nets them per currency against
  our own trade records, and ``alert_or_mark_reconciled`` marks the matching ones reconciled or **fails**, with
  every difference and the time left to dispute, so that someone disputes it (by hand) before the window
  closes.
* ``FINAL_SETTLEMENTS`` (``.../settlements/final``, ``completed`` and ``rejected``) and
  ``oes_settlement_outcome`` tell what became of them (here: a log line; ``rejected`` with BitGo's reason).

Each settlement is acted on once per status and ``updatedAt``:
:func:`~airflow_provider_oes.settlement_assets.new_settlements` with ``acknowledge=True`` leaves out what
another run of the DAG took on and acknowledges, in the asset's state store, what this run takes on; the
watchers' ``acknowledged_by`` makes them emit again what no run took on (at-least-once delivery, exactly-once
acting: ``docs/settlement_events.rst``). A settlement whose ``updatedAt`` moves while it is ``pending`` (a
dispute raised) is reviewed again. A failed run keeps its settlements: clear it to review them again.

Our trade records stand here in the Airflow Variable ``oes_settlement_trade_records`` (JSON: the partner's
``externalId`` -> currency -> signed base units, as the settlement's transfers should net), or in
``TRADE_RECORDS`` below when the Variable is not set.

Both DAGs start paused: a watcher runs only while a DAG scheduled on its asset is unpaused. Configuration (the
asset URIs must be known when the file is parsed, so it comes from the environment): ``OES_ENTERPRISE_ID``
(default: the simulator's ``sim-enterprise``), ``OES_EVENT_POLL_INTERVAL`` (seconds, default 10) and
``OES_EVENT_REDELIVER_AFTER`` (seconds, default 600). The connection is ``oes_default``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_oes.settlement_assets import new_settlements, settlements_asset_uri
from airflow_provider_oes.triggers.settlement_event import SettlementEventTrigger

ENTERPRISE_ID = os.environ.get("OES_ENTERPRISE_ID", "sim-enterprise")
POLL_INTERVAL = float(os.environ.get("OES_EVENT_POLL_INTERVAL", "10"))
REDELIVER_AFTER = float(os.environ.get("OES_EVENT_REDELIVER_AFTER", "600"))
REVIEW_DAG, OUTCOME_DAG = "oes_settlement_review", "oes_settlement_outcome"
TRADE_RECORDS_VARIABLE = "oes_settlement_trade_records"
TRADE_RECORDS: dict[str, dict[str, str]] = {
    # externalId -> currency -> what our trades say the settlement's transfers net to (signed base units)
    "sim-trades-2026-12-01": {"ofctbtc": "-100000000", "ofctusdt": "95000000000"},
}

# [START howto_trigger_settlement_event]
NEW_SETTLEMENTS = Asset(
    name="oes_new_settlements",
    uri=settlements_asset_uri(ENTERPRISE_ID, "pending"),
    watchers=[
        AssetWatcher(
            name="oes_new_settlement_watcher",
            trigger=SettlementEventTrigger(
                enterprise_id=ENTERPRISE_ID,
                statuses=["pending"],
                poll_interval=POLL_INTERVAL,
                # Emit again what no run of the review DAG acknowledged (new_settlements(acknowledge=True)).
                acknowledged_by=[REVIEW_DAG],
                redeliver_after=REDELIVER_AFTER,
            ),
        )
    ],
)
FINAL_SETTLEMENTS = Asset(
    name="oes_final_settlements",
    uri=settlements_asset_uri(ENTERPRISE_ID, "final"),
    watchers=[
        AssetWatcher(
            name="oes_final_settlement_watcher",
            trigger=SettlementEventTrigger(
                enterprise_id=ENTERPRISE_ID,
                statuses=["completed", "rejected"],
                poll_interval=POLL_INTERVAL,
                acknowledged_by=[OUTCOME_DAG],
                redeliver_after=REDELIVER_AFTER,
            ),
        )
    ],
)
# [END howto_trigger_settlement_event]


def compare(settlement: dict[str, Any], transfers: list[dict[str, Any]], expected: dict[str, str] | None) -> dict:
    """Net ``transfers`` per currency (Python integers: exact) and compare them with our ``expected`` amounts.

    :returns: The review: ``differences`` is empty when the settlement matches our records.
    """
    netted: dict[str, int] = {}
    for transfer in transfers:
        netted[transfer["currency"]] = netted.get(transfer["currency"], 0) + int(transfer["quantity"])
    ours = {currency: int(quantity) for currency, quantity in (expected or {}).items()}
    differences = {
        currency: {"ours": str(ours.get(currency, 0)), "settlement": str(netted.get(currency, 0))}
        for currency in sorted(netted.keys() | ours.keys())
        if netted.get(currency, 0) != ours.get(currency, 0)
    }
    if expected is None:
        differences["externalId"] = {"ours": "no trade records", "settlement": str(settlement.get("externalId"))}
    return {
        "id": settlement["id"],
        "externalId": settlement.get("externalId"),
        "updatedAt": settlement.get("updatedAt"),
        "disputeWindowEndsAt": settlement.get("disputeWindowEndsAt"),
        "netted": {currency: str(quantity) for currency, quantity in sorted(netted.items())},
        "differences": differences,
    }


def time_left(review: dict[str, Any], now: datetime) -> str:
    """How long is left to dispute, in words."""
    ends = review.get("disputeWindowEndsAt")
    if not ends:
        return "the partner has no dispute window: take it up with the partner"
    left = datetime.fromisoformat(ends.replace("Z", "+00:00")) - now
    if left.total_seconds() <= 0:
        return f"the dispute window closed at {ends}: take it up with the partner"
    return f"dispute it before {ends} ({int(left.total_seconds() // 60)} min left)"


with DAG(
    dag_id=REVIEW_DAG,
    description="Reconcile every new settlement against our trade records before its dispute window closes.",
    schedule=[NEW_SETTLEMENTS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["oes", "example", "event-driven", "settlement"],
) as dag:
    # [START howto_settlement_review]
    @task(inlets=[NEW_SETTLEMENTS])  # an inlet: the task reads the asset's events and state store
    def to_review(
        triggering_asset_events: Any = None,
        inlet_events: Any = None,
        dag_run: Any = None,
        asset_state_store: Any = None,
    ) -> list[dict[str, Any]]:
        """The new settlements that started this run and no other run, each acknowledged by this run."""
        return new_settlements(
            NEW_SETTLEMENTS,
            triggering_asset_events,
            inlet_events,
            statuses=["pending"],
            acknowledge=True,
            context={"dag_run": dag_run, "asset_state_store": asset_state_store},
        )

    @task
    def reconcile(settlements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Read each settlement's transfers and compare them with our trade records."""
        from airflow.sdk import Variable

        from airflow_provider_oes.hooks.oes import OESHook

        records = Variable.get(TRADE_RECORDS_VARIABLE, default=TRADE_RECORDS, deserialize_json=True)
        hook = OESHook()
        reviews = []
        for settlement in settlements:
            details = hook.get_settlement(settlement["id"], ENTERPRISE_ID).to_json_dict()
            expected = records.get(settlement.get("externalId"))
            reviews.append(compare(settlement, details["settlementTransfers"], expected))
        return reviews

    @task
    def alert_or_mark_reconciled(reviews: list[dict[str, Any]]) -> list[str]:
        """Mark what matches reconciled; fail loudly, with every difference and the deadline, on the rest."""
        from airflow.sdk.exceptions import AirflowFailException

        now = datetime.now(timezone.utc)
        mismatched = []
        for review in reviews:
            if review["differences"]:
                mismatched.append(
                    f"settlement {review['id']} ({review['externalId']}) does not match our records: "
                    f"{review['differences']}; {time_left(review, now)}"
                )
            else:
                print(f"settlement {review['id']} ({review['externalId']}) reconciled: {review['netted']}")
        if mismatched:
            for line in mismatched:
                print(f"ALERT: {line}")
            # No retries: the records will not change by themselves; a person must look before the deadline.
            raise AirflowFailException(f"{len(mismatched)} settlement(s) to dispute:\n" + "\n".join(mismatched))
        return [review["id"] for review in reviews]

    alert_or_mark_reconciled(reconcile(to_review()))
    # [END howto_settlement_review]


with DAG(
    dag_id=OUTCOME_DAG,
    description="Tell what became of each settlement: completed, or rejected with BitGo's reason.",
    schedule=[FINAL_SETTLEMENTS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["oes", "example", "event-driven", "settlement"],
) as outcome_dag:

    @task(inlets=[FINAL_SETTLEMENTS])
    def notify(
        triggering_asset_events: Any = None,
        inlet_events: Any = None,
        dag_run: Any = None,
        asset_state_store: Any = None,
    ) -> list[dict[str, Any]]:
        """Report each final settlement (here: log it; in real life, a message to the treasury channel)."""
        finals = new_settlements(
            FINAL_SETTLEMENTS,
            triggering_asset_events,
            inlet_events,
            statuses=["completed", "rejected"],
            acknowledge=True,
            context={"dag_run": dag_run, "asset_state_store": asset_state_store},
        )
        for settlement in finals:
            reason = f": {settlement.get('reason')}" if settlement["status"] == "rejected" else ""
            print(f"settlement {settlement['id']} ({settlement.get('externalId')}) is {settlement['status']}{reason}")
        return [{"id": s["id"], "status": s["status"], "reason": s.get("reason")} for s in finals]

    notify()

"""Example 8: gate a reconciliation on a BitGo OES settlement being final.

What it shows
-------------
* ``wait_for_settlement`` runs in ``mode="reschedule"`` (its worker slot is given back between checks) and
  succeeds only on ``completed``; its XCom is the settlement with all its transfers, amounts exact as strings.
* ``rejected`` is final: the sensor fails at once with BitGo's reason, without retries, and nothing downstream
  runs. ``failed`` is **not** final (BitGo retries it): the sensor logs the reason and keeps waiting.
* ``reconcile`` nets the transfers per currency (signed base units, integer arithmetic: no float anywhere) and
  compares them with our own records, passed here as the ``expected_transfers`` param.
* ``alert`` runs only when something does not match, with the differences, so that a person can take it up
  with the partner (or, for a settlement still in its dispute window, raise a dispute by hand).

Trigger it with ``--conf '{"settlement_id": "<uuid>", "expected_transfers": {"ofctbtc": "-100000000"}}'``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_oes.sensors.settlement import SettlementStatusSensor

with DAG(
    dag_id="oes_settlement_reconciliation",
    description="Wait for a settlement to complete, then reconcile its transfers against our records.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one reconciliation at a time keeps the sync path within BitGo's rate limit
    tags=["oes", "example", "settlement"],
    params={
        "settlement_id": Param("00000000-0000-0000-0000-000000000000", type="string"),
        "expected_transfers": Param({}, type="object"),
    },
) as dag:
    # [START howto_sensor_settlement_status]
    wait_for_settlement = SettlementStatusSensor(
        task_id="wait_for_settlement",
        settlement_id="{{ params.settlement_id }}",
        mode="reschedule",
        poke_interval=10,  # seconds; a real DAG would check every few minutes (BitGo allows 360 requests a minute)
        timeout=6 * 3600,  # a v2 settlement waits through the dispute and top-up windows
        # fail_on_failed=True,  # for teams that would rather act on a failed settlement than wait for BitGo's retry
    )
    # [END howto_sensor_settlement_status]

    # [START howto_reconcile_settlement]
    @task(multiple_outputs=True)
    def reconcile(details: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Net the settlement's transfers per currency and compare them with what our records expect."""
        netted: dict[str, int] = {}
        for transfer in details["settlementTransfers"]:
            # Base units as strings, summed as Python integers: exact whatever their length.
            netted[transfer["currency"]] = netted.get(transfer["currency"], 0) + int(transfer["quantity"])
        expected = {currency: int(quantity) for currency, quantity in (params or {})["expected_transfers"].items()}
        differences = {
            currency: {"expected": str(expected.get(currency, 0)), "settled": str(netted.get(currency, 0))}
            for currency in sorted(netted.keys() | expected.keys())
            if netted.get(currency, 0) != expected.get(currency, 0)
        }
        return {
            "settlement_id": details["settlement"]["id"],
            "external_id": details["settlement"]["externalId"],
            "netted": {currency: str(quantity) for currency, quantity in sorted(netted.items())},
            "differences": differences,
        }

    @task.short_circuit
    def mismatched(report: dict[str, Any]) -> bool:
        """Go on to the alert only when the settlement does not match our records."""
        return bool(report["differences"])

    @task
    def alert(report: dict[str, Any]) -> str:
        """Raise the alert (here a log line and the XCom; in production a page, a ticket or a message)."""
        message = f"settlement {report['settlement_id']} ({report['external_id']}) differs: {report['differences']}"
        print(message)
        return message

    report = reconcile(wait_for_settlement.output)
    alert(report).set_upstream(mismatched(report))
    # [END howto_reconcile_settlement]

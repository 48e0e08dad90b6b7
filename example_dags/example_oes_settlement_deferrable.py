"""Example 9: wait for several BitGo OES settlements in the triggerer, then net their transfers.

What it shows
-------------
* ``wait_for_settlement`` is mapped over the ``settlement_ids`` param and ``deferrable=True``: after one check
  on a worker each wait moves to the triggerer, where one settlement poller per connection and enterprise
  asks about every waiting settlement in id batches (one list request per batch and poll interval), over the
  HTTP client and rate limiter the allocation sensors of that connection use. It reads a settlement with its
  transfers only once it is final.
* The status rules are the sensor's in every mode: ``completed`` succeeds with the settlement and its
  transfers as XCom; ``rejected`` fails that map index at once, without retries, with BitGo's reason;
  ``failed`` is not final (BitGo retries it) and the wait goes on until ``timeout``.
* ``net_settled`` adds up the transfers of every completed settlement per currency, in integers.

Trigger it with ``--conf '{"settlement_ids": ["<uuid>", "<uuid>"]}'``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_oes.sensors.settlement import SettlementStatusSensor

with DAG(
    dag_id="oes_settlement_deferrable",
    description="Wait for several settlements in the triggerer, then net their transfers.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oes", "example", "settlement", "deferrable"],
    params={"settlement_ids": Param([], type="array")},
) as dag:

    @task
    def settlement_ids(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["settlement_ids"])

    # [START howto_sensor_settlement_deferrable]
    wait_for_settlement = SettlementStatusSensor.partial(
        task_id="wait_for_settlement",
        deferrable=True,  # the wait runs in the triggerer: no worker slot while a settlement is pending
        poke_interval=5,  # seconds between the triggerer's checks (one list request per batch of ids)
        timeout=6 * 3600,  # a v2 settlement waits through the dispute and top-up windows
    ).expand(settlement_id=settlement_ids())
    # [END howto_sensor_settlement_deferrable]

    @task(multiple_outputs=False)  # one XCom: the netted amounts by currency
    def net_settled(settlements: list[dict[str, Any]]) -> dict[str, str]:
        """Net the transfers of every completed settlement per currency (signed base units, integers)."""
        netted: dict[str, int] = {}
        for details in settlements:
            for transfer in details["settlementTransfers"]:
                netted[transfer["currency"]] = netted.get(transfer["currency"], 0) + int(transfer["quantity"])
        return {currency: str(quantity) for currency, quantity in sorted(netted.items())}

    net_settled(wait_for_settlement.output)

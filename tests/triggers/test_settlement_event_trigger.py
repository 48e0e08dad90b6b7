"""SettlementEventTrigger against the simulator over HTTP (the ``run()`` path): what it emits and when."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes.triggers.settlement_event import SettlementEventTrigger
from tests.triggers._event_fakes import Accessor, requires_airflow_33
from tests.triggers._settlement_watching import Watching

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, requires_airflow_33]


def _trigger(sim: OESSimulator, conn_id: str, **kwargs: object) -> SettlementEventTrigger:
    return SettlementEventTrigger(enterprise_id=sim.enterprise_id, oes_conn_id=conn_id, poll_interval=0.1, **kwargs)


async def _started(watching: Watching) -> None:
    """The first poll fixed "now" (whole seconds of the server's Date): later changes are after it."""
    for _ in range(200):
        if watching.trigger.asset_state_store.values:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.1)


async def test_new_pending_settlements_come_with_their_dispute_window_end(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    with_window = sim.add_partner(dispute_window_minutes=90, top_up_window_minutes=30)
    without = sim.add_partner()
    watching = Watching(_trigger(sim, conn_id), Accessor())
    await _started(watching)
    disputed = sim.add_settlement(partner_id=with_window, final_status="pending")
    plain = sim.add_settlement(partner_id=without, final_status="pending")
    await watching.wait_for(2)
    await asyncio.sleep(0.5)
    await watching.stop()
    by_id = {s["id"]: s for s in watching.settlements()}
    assert sorted(by_id) == sorted([disputed, plain])
    assert len(watching.keys()) == 2
    created = datetime.fromisoformat(by_id[disputed]["createdAt"].replace("Z", "+00:00"))
    ends = by_id[disputed]["disputeWindowEndsAt"]
    assert ends.endswith("Z")
    assert datetime.fromisoformat(ends.replace("Z", "+00:00")) == created + timedelta(minutes=90)
    assert by_id[plain]["disputeWindowEndsAt"] is None
    assert watching.payloads[0]["statuses"] == ["pending"]
    assert watching.payloads[0]["enterprise_id"] == sim.enterprise_id


async def test_settlements_that_become_final_are_emitted_once_each(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    partner = sim.add_partner(dispute_window_minutes=60)
    watching = Watching(_trigger(sim, conn_id, statuses=["completed", "rejected"]), Accessor())
    await _started(watching)
    ids = [sim.add_settlement(partner_id=partner, final_status="pending") for _ in range(3)]
    onchain = sim.add_settlement(partner_id=partner, final_status="pending", settlement_type="onchain")
    await asyncio.sleep(0.5)
    assert watching.keys() == []  # pending is not watched here
    for settlement_id in ids:
        sim.set_settlement_status(settlement_id, "completed")
    sim.set_settlement_status(onchain, "rejected", reason="admin rejected")
    await watching.wait_for(4)
    await asyncio.sleep(0.6)
    await watching.stop()
    assert sorted(watching.keys()) == sorted([*((i, "completed") for i in ids), (onchain, "rejected")])
    assert all(s["disputeWindowEndsAt"] is None for s in watching.settlements())

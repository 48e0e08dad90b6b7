"""SettlementEventTrigger against the simulator over HTTP (the ``run()`` path): what it emits and when."""

from __future__ import annotations

import asyncio
import json
import re
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
    assert len(watching.emitted()) == 2
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
    assert watching.emitted() == []  # pending is not watched here
    for settlement_id in ids:
        sim.set_settlement_status(settlement_id, "completed")
    sim.set_settlement_status(onchain, "rejected", reason="admin rejected")
    await watching.wait_for(4)
    await asyncio.sleep(0.6)
    await watching.stop()
    assert sorted(watching.emitted()) == sorted([*((i, "completed") for i in ids), (onchain, "rejected")])
    assert all(s["disputeWindowEndsAt"] is None for s in watching.settlements())


async def test_partner_and_status_filters_and_each_failure_a_delivery(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    ours, theirs = sim.add_partner(), sim.add_partner()
    watching = Watching(_trigger(sim, conn_id, statuses="failed", partner_ids=[ours.upper()]), Accessor())
    await _started(watching)
    retried = sim.add_settlement(partner_id=ours, final_status="pending")
    other = sim.add_settlement(partner_id=theirs, final_status="pending")
    sim.set_settlement_status(retried, "failed", reason="insufficient funds")
    sim.set_settlement_status(other, "failed")
    await watching.wait_for(1)
    await asyncio.sleep(0.3)
    sim.set_settlement_status(retried, "pending")  # BitGo retries it...
    await asyncio.sleep(0.3)
    sim.set_settlement_status(retried, "failed", reason="again")  # ...and it fails again: a new delivery
    await watching.wait_for(2)
    await asyncio.sleep(0.6)
    await watching.stop()
    assert watching.emitted() == [(retried, "failed"), (retried, "failed")]
    first, second = watching.settlements()
    assert (first["reason"], second["reason"]) == ("insufficient funds", "again")
    assert first["updatedAt"] < second["updatedAt"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"statuses": ["settled"]}, "'settled'"),
        ({"statuses": []}, "[]"),
        ({"statuses": None}, "None"),
        ({"partner_ids": ["not-a-uuid"]}, "'not-a-uuid'"),
        ({"poll_interval": 0}, "0"),
        ({"poll_interval": float("nan")}, "nan"),
        ({"redeliver_after": -1}, "-1"),
        ({"max_redeliveries": 0}, "0"),
        ({"max_settlements_per_event": True}, "True"),
        ({"acknowledged_by": [""]}, "['']"),
        ({"oes_conn_id": ""}, "''"),
        ({"enterprise_id": ".."}, ".."),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(kwargs: dict[str, object], named: str) -> None:
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    arguments: dict[str, object] = {"enterprise_id": "ent-1", **kwargs}
    with pytest.raises(OESInvalidRequestError, match=re.escape(named)):
        SettlementEventTrigger(**arguments)  # type: ignore[arg-type]


def test_serialize_round_trips_and_the_state_key_ignores_partners_and_interval() -> None:
    trigger = SettlementEventTrigger(
        enterprise_id="ent-1",
        statuses=["completed", "pending"],
        partner_ids=["0F3C1D2E-4B5A-4C6D-8E7F-0A1B2C3D4E5F"],
        acknowledged_by="review",
        max_settlements_per_event=50,
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_oes.triggers.settlement_event.SettlementEventTrigger"
    again = SettlementEventTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert kwargs["partner_ids"] == ["0f3c1d2e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"]
    assert kwargs["acknowledged_by"] == ["review"]
    json.dumps(kwargs)  # plain data
    edited = SettlementEventTrigger(enterprise_id="ent-1", statuses=["pending", "completed"], poll_interval=30)
    assert edited.state_key == trigger.state_key
    assert SettlementEventTrigger(enterprise_id="ent-1").state_key != trigger.state_key

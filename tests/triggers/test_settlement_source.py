"""The settlement change source with a scripted client: what it asks, what it vouches for, hostile answers."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_oes._settlement_api import PARTNERS, SETTLEMENTS, TRANSFERS
from airflow_provider_oes._time import format_timestamp
from airflow_provider_oes.exceptions import OESResponseError
from airflow_provider_oes.hooks.async_client import ListPage
from airflow_provider_oes.triggers._settlement_watch.records import SettlementQuery
from airflow_provider_oes.triggers._settlement_watch.source import SettlementSource
from tests._settlement_factories import PARTNER_ID, partner_record, settlement_record

NOW = 1_800_000_000.0


def _settlement(status: str = "pending", **overrides: Any) -> dict[str, Any]:
    stamps = {"createdAt": format_timestamp(NOW - 20), "updatedAt": format_timestamp(NOW - 10)}
    return settlement_record(status, transferDirection="send", **{"id": str(uuid.uuid4()), **stamps, **overrides})


class Client:
    """Answers each route from a script; records every request."""

    def __init__(self) -> None:
        self.transfers: list[Any] = []
        self.settlements: list[Any] = []
        self.by_id: dict[str, Any] = {}
        self.partners = [partner_record(window=90)]
        self.date: float | None = NOW
        self.asked: list[tuple[str, dict[str, Any], int, int]] = []

    async def list_route_page(
        self, route: Any, enterprise_id: str, filters: dict[str, Any], *, page_number: int = 0, page_size: int
    ) -> ListPage:
        self.asked.append((route.key, filters, page_number, page_size))
        if route is TRANSFERS:
            rows = self.transfers
        elif route is SETTLEMENTS and "settlement_ids" in filters:
            rows = [self.by_id[i] for i in filters["settlement_ids"] if i in self.by_id]
        elif route is SETTLEMENTS:
            rows = self.settlements
        else:
            assert route is PARTNERS
            rows = self.partners
        return ListPage(rows[page_number * page_size : (page_number + 1) * page_size], self.date)


def _source(client: Client, since: float | None = NOW - 60, page_size: int = 2) -> SettlementSource:
    settings = SimpleNamespace(feed_overlap=30.0, feed_page_size=page_size)
    connection = SimpleNamespace(settings=settings, client=client, batch_size=2, limiter=None)
    return SettlementSource(
        connection,  # type: ignore[arg-type]
        "oes",
        "ent-1",
        SettlementQuery(("pending", "completed")),
        10.0,
        since,
        clock=lambda: 0.0,
    )


async def test_a_poll_reads_changed_settlements_by_id_from_the_watermark_less_the_overlap() -> None:
    client = Client()
    changed = [_settlement(), _settlement("completed"), _settlement()]
    client.by_id = {s["id"]: s for s in changed}
    client.transfers = [{"settlementId": s["id"]} for s in changed] + [{"settlementId": changed[0]["id"]}]
    source = _source(client)
    batch = await source.poll()
    transfers = [a for a in client.asked if a[0] == "settlementTransfers"]
    assert [a[2] for a in transfers] == [0, 1, 2]  # paged to the first short page
    assert transfers[0][1]["settlement_updated_on_or_after"] == format_timestamp(NOW - 60 - 30)  # since - overlap
    assert transfers[0][1]["sort_direction"] == "DESC"
    by_id = [a for a in client.asked if a[0] == "settlements" and "settlement_ids" in a[1]]
    assert sorted(i for a in by_id for i in a[1]["settlement_ids"]) == sorted(s["id"].lower() for s in changed)
    assert sorted(r.id for r in batch.rows) == sorted(s["id"] for s in changed)
    assert batch.final
    assert batch.polled_at == NOW
    # the first scan of this subscription started at NOW: vouched only up to the stored since (the scan before)
    assert batch.resume_from == NOW - 60
    pending = [r.record for r in batch.rows if r.record["status"] == "pending"]
    assert {r["disputeWindowEndsAt"] for r in pending} == {format_timestamp(NOW - 20 + 90 * 60)}  # createdAt + 90 min
    completed = [r.record for r in batch.rows if r.record["status"] == "completed"]
    assert completed[0]["disputeWindowEndsAt"] is None


async def test_hostile_answers_are_dropped_and_never_invent_a_settlement() -> None:
    client = Client()
    real = _settlement()
    liar = _settlement("completed")  # answered for an id nobody asked about
    client.by_id = {real["id"]: real}
    client.transfers = [
        "not a transfer",
        {"settlementId": 42},
        {"settlementId": "../../etc"},
        {"settlementId": real["id"]},
    ]
    source = _source(client, page_size=10)

    async def lying(route: Any, enterprise_id: str, filters: dict[str, Any], **kw: Any) -> ListPage:
        page = await Client.list_route_page(client, route, enterprise_id, filters, **kw)
        if route is SETTLEMENTS and "settlement_ids" in filters:
            return ListPage([*page.records, liar, "junk"], page.server_time)
        return page

    client.list_route_page = lying  # type: ignore[method-assign]
    batch = await source.poll()
    assert [r.id for r in batch.rows] == [real["id"]]
    by_id = [a for a in client.asked if a[0] == "settlements" and "settlement_ids" in a[1]]
    assert [a[1]["settlement_ids"] for a in by_id] == [[real["id"].lower()]]


async def test_without_a_date_header_a_poll_fails_rather_than_vouching_for_a_guess() -> None:
    client = Client()
    client.date = None
    with pytest.raises(OESResponseError, match="Date"):
        await _source(client).poll()
    with pytest.raises(OESResponseError, match="Date"):
        await _source(client, since=None).poll()


async def test_a_first_start_only_learns_the_server_time() -> None:
    client = Client()
    batch = await _source(client, since=None).poll()
    assert batch.rows == ()
    assert (batch.polled_at, batch.resume_from) == (NOW, NOW)
    assert [(a[0], a[3]) for a in client.asked] == [("settlementTransfers", 1)]


async def test_the_list_scan_is_vouched_for_only_once_the_next_scan_started() -> None:
    client = Client()
    client.settlements = [_settlement(partnerId=PARTNER_ID)]
    now = [0.0]
    source = _source(client)
    source._clock = lambda: now[0]  # type: ignore[method-assign]
    first = await source.poll()  # scans (restart)
    assert first.resume_from == NOW - 60
    client.date = NOW + 400
    now[0] = 400.0
    second = await source.poll()  # scans again: the first scan (NOW) is now vouched for
    assert second.resume_from == NOW
    scans = [a for a in client.asked if a[0] == "settlements" and "settlement_ids" not in a[1]]
    assert len(scans) == 2
    assert scans[0][1]["statuses"] == ["pending", "completed"]


async def test_settlements_whose_transfers_say_another_status_are_not_read_by_id() -> None:
    client = Client()
    watched, other, unknown = _settlement(), _settlement("rejected"), _settlement()
    client.by_id = {s["id"]: s for s in (watched, other, unknown)}
    client.transfers = [
        {"settlementId": watched["id"], "settlementStatus": "pending"},
        {"settlementId": other["id"], "settlementStatus": "rejected"},
        {"settlementId": unknown["id"], "settlementStatus": "on_hold"},  # not a status it knows: read it
    ]
    batch = await _source(client, page_size=10).poll()
    by_id = [
        i for a in client.asked if a[0] == "settlements" and "settlement_ids" in a[1] for i in a[1]["settlement_ids"]
    ]
    assert sorted(by_id) == sorted([watched["id"].lower(), unknown["id"].lower()])
    assert sorted(r.id for r in batch.rows) == sorted([watched["id"], unknown["id"]])


async def test_a_poll_slower_than_the_watchers_heartbeat_still_completes() -> None:
    """The watch loop stops waiting for a batch after a heartbeat's time; the poll must go on, not restart."""
    client = Client()
    real = _settlement()
    client.by_id = {real["id"]: real}
    client.transfers = [{"settlementId": real["id"]}]
    plain = client.list_route_page

    async def slow(*args: Any, **kwargs: Any) -> ListPage:
        await asyncio.sleep(0.05)
        return await plain(*args, **kwargs)

    client.list_route_page = slow  # type: ignore[method-assign]
    source = _source(client)
    timeouts = 0
    while True:
        try:
            batch = await asyncio.wait_for(source.__anext__(), 0.02)  # shorter than one request
            break
        except asyncio.TimeoutError:
            timeouts += 1
            assert timeouts < 100
    source._task.cancel()  # type: ignore[union-attr]
    assert timeouts >= 2
    assert [r.id for r in batch.rows] == [real["id"]]
    assert len([a for a in client.asked if a[0] == "settlementTransfers"]) == 1  # one poll, never restarted

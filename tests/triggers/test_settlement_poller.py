"""The shared poller with the settlement resource, against an in-memory client: what the poller does for
settlements that the allocation resource never asks of it (fail-fast waits, reads in full before an event),
and what settlements now get from the one poller (the list fallback, the gc policy, the strategy rule)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes import _metrics
from airflow_provider_oes._settlement_api import KIND_PAGE, KIND_SINGLE
from airflow_provider_oes.exceptions import OESNotFoundError
from airflow_provider_oes.settlement_models import SettlementDetails
from airflow_provider_oes.triggers import _gc
from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._polling.allocations import ALLOCATIONS
from airflow_provider_oes.triggers._polling.settlements import SETTLEMENTS
from tests._settlement_factories import settlement_record, transfer_record
from tests.triggers._support import wait_for

if TYPE_CHECKING:
    from airflow_provider_oes.triggers._shared.waiters import Waiter

ENTERPRISE = "ent-settle"
IDS = [f"5b1d7c3e-2f4a-4e6b-8c9d-{n:012d}" for n in range(1, 4)]


class FakeClient:
    """The two settlement reads of ``OESAsyncClient`` over a status table; counts every call."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.lists: list[list[str]] = []
        self.gets: list[str] = []
        self.list_error: Exception | None = None
        self.metrics = SimpleNamespace(on=False)
        self.requests_sent = 0

    def _record(self, settlement_id: str) -> dict[str, Any]:
        return settlement_record(self.statuses[settlement_id], id=settlement_id)

    async def list_settlements_page(self, enterprise_id: str, *, settlement_ids: Any, page_size: int) -> list[Any]:
        self.requests_sent += 1
        self.lists.append(list(settlement_ids))
        if self.list_error is not None:
            raise self.list_error
        return [{**self._record(i), "transferDirection": "send"} for i in settlement_ids if i in self.statuses]

    async def get_settlement(self, settlement_id: str, enterprise_id: str) -> SettlementDetails:
        self.requests_sent += 1
        self.gets.append(settlement_id)
        transfer = transfer_record(1, settlementId=settlement_id)
        return SettlementDetails.model_validate(
            {
                "settlement": self._record(settlement_id),
                "settlementTransfers": [transfer],
                "settlingDisputes": [],
                "settlementDisputes": [],
            }
        )

    async def aclose(self) -> None:
        pass


def _poller(client: FakeClient, strategy: str = "feed") -> polling.Poller[Any]:
    settings = SimpleNamespace(strategy=strategy, rate_limit_requests=360, rate_limit_period=60.0)
    connection: Any = SimpleNamespace(settings=settings, client=client, limiter=None, batch_size=2, users=0)
    connection.retain = lambda: setattr(connection, "users", connection.users + 1)
    return polling.Poller(polling.PollerRegistry(), ("oes_settle", ENTERPRISE), SETTLEMENTS, connection)


def test_the_resources_name_request_kinds_the_metrics_know() -> None:
    assert (SETTLEMENTS.batch_kind, SETTLEMENTS.single_kind) == (KIND_PAGE, KIND_SINGLE)
    for resource in (ALLOCATIONS, SETTLEMENTS):
        assert {resource.batch_kind, resource.single_kind} <= set(_metrics.REQUEST_KINDS)


async def test_a_connection_on_the_feed_polls_settlements_in_id_batches() -> None:
    client = FakeClient(dict.fromkeys(IDS, "pending"))
    poller = _poller(client)
    assert poller.strategy == "id_batches"  # the connection says feed; settlements have none
    waiters = [poller.add(i, 0.01) for i in IDS]
    await wait_for(lambda: poller.sweeps >= 2, "two sweeps")
    assert client.lists[:4] == [IDS[:2], IDS[2:], IDS[:2], IDS[2:]]  # batch_size 2, each sweep
    assert client.gets == []  # nothing to act on: no GET
    for waiter in waiters:
        waiter.cancel()
    await wait_for(lambda: poller.waiters == {} and poller._stopped, "the poller to stop")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Any:
    """The poller's warnings, from a handler on its own logger (whatever Airflow did to the root's)."""
    logger = logging.getLogger("airflow_provider_oes.triggers._polling")
    handler, level, disabled = _Records(), logger.level, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.disabled = disabled


async def test_failed_ends_only_the_fail_fast_waits_and_is_warned_once(warnings_logged: list[str]) -> None:
    settlement_id = IDS[0]
    client = FakeClient({settlement_id: "failed"})
    poller = _poller(client)
    patient = poller.add(settlement_id, 0.01)
    fast = poller.add(settlement_id, 0.01, fail_fast=True)
    assert isinstance(fast, polling.FailFastWaiter)
    event = await asyncio.wait_for(fast.wait(), 10)
    assert event["status"] == "settled"
    assert event["settlement"]["settlement"]["status"] == "failed"
    assert event["settlement"]["settlementTransfers"][0]["settlementId"] == settlement_id  # read in full
    fast.cancel()
    assert client.gets == [settlement_id]  # one GET: a fail-fast waiter was there
    sweeps = poller.sweeps
    await wait_for(lambda: poller.sweeps >= sweeps + 3, "three more sweeps")
    assert client.gets == [settlement_id]  # failed, nobody fails fast now: listed only
    assert not patient.future.done()
    warned = [m for m in warnings_logged if m.startswith(f"Settlement {settlement_id} failed")]
    assert len(warned) == 1  # once per change, not once per sweep

    client.statuses[settlement_id] = "completed"
    done = await asyncio.wait_for(patient.wait(), 10)
    assert done["settlement"]["settlement"]["status"] == "completed"
    assert client.gets == [settlement_id, settlement_id]
    assert poller.finished == 2
    patient.cancel()


async def test_a_list_endpoint_answering_404_falls_back_to_one_get_per_settlement() -> None:
    client = FakeClient(dict.fromkeys(IDS, "pending"))
    client.list_error = OESNotFoundError("no such route", status_code=404)
    poller = _poller(client, strategy="id_batches")
    waiters: list[Waiter] = [poller.add(i, 0.01) for i in IDS]
    await wait_for(lambda: poller.strategy == "single", "the fallback to one GET each")
    assert not any(w.future.done() for w in waiters)  # no error event: the GET by id decides
    lists = len(client.lists)
    client.statuses[IDS[1]] = "rejected"
    event = await asyncio.wait_for(waiters[1].wait(), 10)
    assert event["settlement"]["settlement"]["status"] == "rejected"
    assert len(client.lists) == lists  # never listed again
    assert set(client.gets) == set(IDS)
    for waiter in waiters:
        waiter.cancel()


async def test_settlement_waiters_count_in_the_gc_policy() -> None:
    _gc.reset()
    client = FakeClient(dict.fromkeys(IDS, "pending"))
    poller = _poller(client)
    waiters = [poller.add(i, 3600.0) for i in IDS]
    assert _gc.waiting() == len(IDS)
    for waiter in waiters:
        waiter.cancel()
    assert _gc.waiting() == 0
    await wait_for(lambda: poller._stopped, "the poller to stop")

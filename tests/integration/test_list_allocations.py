"""Listing allocations over HTTP against the local simulator: the hook, the async client and the operator.

The paging guarantee tested here: with the API's default order (``createdAt``, then ``id``, ascending),
allocations created while a listing runs land after every earlier one, so each allocation that existed
when the listing began is yielded exactly once and in order; the new ones, if any, come after them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.exceptions import OESAuthenticationError, OESInvalidRequestError, OESServerError
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.operators.allocation import ListAllocationsOperator

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration

BASE_TIME = datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc)
CONNECTION_B = "c0ffee00-0000-4000-8000-00000000000b"
PARTNER_B = "0a0b0c0d-0000-4000-8000-00000000000b"


def _list_requests(sim: OESSimulator) -> list[Any]:
    return [r for r in sim.requests if r[1].endswith("/clients/allocations")]


def _seed(sim: OESSimulator, count: int, **kwargs: Any) -> list[str]:
    """``count`` allocations created one minute apart from BASE_TIME, in that order."""
    return [
        sim.add_allocation(created_at=BASE_TIME + timedelta(minutes=i), quantity=str(i + 1), **kwargs)
        for i in range(count)
    ]


def test_listing_spans_pages_in_creation_order(oes_simulator: OESSimulator, oes_connection: str) -> None:
    ids = _seed(oes_simulator, 25)
    listed = list(OESHook().list_allocations(page_size=10))
    assert [a.id for a in listed] == ids
    assert [a.amount.quantity for a in listed] == [str(i + 1) for i in range(25)]
    assert len(_list_requests(oes_simulator)) == 3  # 10 + 10 + 5


def test_allocations_added_while_paging_come_after_every_earlier_one(
    oes_simulator: OESSimulator, oes_connection: str
) -> None:
    original = _seed(oes_simulator, 25)
    listing = OESHook().list_allocations(page_size=10)
    seen = [next(listing).id for _ in range(10)]  # page 0 fetched, page 1 not yet
    assert len(_list_requests(oes_simulator)) == 1
    added = [oes_simulator.add_allocation() for _ in range(7)]  # created now: after every seeded one
    seen += [allocation.id for allocation in listing]
    assert seen[:25] == original  # every allocation that existed is listed once, in order
    assert seen[25:] == added  # the new ones come after them (here all of them: the listing was not done)
    assert len(seen) == len(set(seen))
    assert len(_list_requests(oes_simulator)) == 4  # pages 0..3: 10 + 10 + 10 + 2


def test_every_filter_the_simulator_knows(oes_simulator: OESSimulator, oes_connection: str) -> None:
    cleared = _seed(oes_simulator, 3, final_status="cleared")
    released_eth = oes_simulator.add_allocation(
        final_status="released", currency="ofcteth", created_at=BASE_TIME + timedelta(hours=1)
    )
    reserved_b = oes_simulator.add_allocation(
        final_status="reserved",
        connection_id=CONNECTION_B,
        partner_id=PARTNER_B,
        created_at=BASE_TIME + timedelta(hours=2),
    )
    deallocation = oes_simulator.add_allocation(type="deallocation", created_at=BASE_TIME + timedelta(hours=3))
    hook = OESHook()

    def ids(**filters: Any) -> list[str]:
        return [a.id for a in hook.list_allocations(**filters)]

    assert ids(statuses=["released"]) == [released_eth]
    assert ids(statuses=["cleared", "reserved"], types=["allocation"]) == [*cleared, reserved_b]
    assert ids(types=["deallocation"]) == [deallocation]
    assert ids(currencies=["ofcteth"]) == [released_eth]
    assert ids(connection_ids=[CONNECTION_B]) == [reserved_b]
    assert ids(partner_ids=[PARTNER_B]) == [reserved_b]
    assert ids(allocation_ids=[deallocation, cleared[1]]) == [cleared[1], deallocation]
    assert ids(
        created_on_or_after=BASE_TIME + timedelta(hours=1), created_before=BASE_TIME + timedelta(hours=2, minutes=30)
    ) == [
        released_eth,
        reserved_b,
    ]
    by_quantity = ids(
        statuses=["cleared"], types=["allocation"], sort_field="quantity", sort_direction="DESC", page_size=2
    )
    assert by_quantity == cleared[::-1]


def test_errors_and_retries_as_for_the_single_get(oes_simulator: OESSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_oes.testing.connections import oes_connection_env

    def connect(**extras: Any) -> None:
        env = oes_connection_env(
            "oes_default", host=oes_simulator.url, token=oes_simulator.token, retry_max_wait=0, **extras
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    connect(enterprise_id=oes_simulator.enterprise_id, max_retries=2)
    ids = _seed(oes_simulator, 3)
    oes_simulator.inject_fault("503", count=2)
    assert [a.id for a in OESHook().list_allocations()] == ids  # two 503s retried
    oes_simulator.inject_fault("500", count=5)
    with pytest.raises(OESServerError):
        list(OESHook().list_allocations())
    oes_simulator.clear_faults()
    connect(enterprise_id="not-a-member", max_retries=2)
    with pytest.raises(OESAuthenticationError):
        list(OESHook().list_allocations())


async def test_async_client_sends_the_same_query(oes_simulator: OESSimulator, oes_connection: str) -> None:
    from airflow_provider_oes.hooks.async_client import OESAsyncClient

    ids = _seed(oes_simulator, 4, final_status="cleared")
    settings = OESHook().settings
    client = OESAsyncClient(settings)
    try:
        records = await client.list_allocations(
            oes_simulator.enterprise_id,
            statuses=["cleared"],
            types=["allocation"],
            currencies=["ofctbtc"],
            created_on_or_after=BASE_TIME,
            sort_field="quantity",
            sort_direction="DESC",
            page_number=1,
            page_size=2,
        )
        assert [r["id"] for r in records] == [ids[1], ids[0]]
        with pytest.raises(OESInvalidRequestError, match="sort_direction"):
            await client.list_allocations(oes_simulator.enterprise_id, sort_direction="down")
    finally:
        await client.aclose()


def test_operator_returns_the_listing_for_xcom(oes_simulator: OESSimulator, oes_connection: str) -> None:
    ids = _seed(oes_simulator, 5, final_status="released")
    _seed(oes_simulator, 2, final_status="cleared")
    operator = ListAllocationsOperator(task_id="list", statuses=["released"], page_size=2)
    listed = operator.execute({})  # type: ignore[arg-type]
    assert isinstance(listed, list)
    assert [record["id"] for record in listed] == ids
    assert listed[0] == oes_simulator.get_record(ids[0])  # the API's own JSON shape
    too_many = ListAllocationsOperator(task_id="list", statuses=["released"], max_records=4)
    with pytest.raises(Exception, match="more than max_records=4"):
        too_many.execute({})  # type: ignore[arg-type]


def test_operator_writes_json_lines(oes_simulator: OESSimulator, oes_connection: str, tmp_path: Path) -> None:
    ids = _seed(oes_simulator, 12)
    path = tmp_path / "out" / "allocations.jsonl"
    operator = ListAllocationsOperator(task_id="list", output_path=str(path), page_size=5, max_records=None)
    assert operator.execute({}) == {"path": str(path), "count": 12}  # type: ignore[arg-type]
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids
    # A listing that fails part-way leaves no file behind, not a partial one.
    failed = tmp_path / "failed.jsonl"
    capped = ListAllocationsOperator(task_id="list", output_path=str(failed), page_size=5, max_records=7)
    with pytest.raises(Exception, match="more than max_records=7"):
        capped.execute({})  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


async def test_every_request_names_the_enterprise_in_a_header_the_gateway_accepts(
    oes_simulator: OESSimulator, oes_connection: str
) -> None:
    """Hook (single GET, list, connection test), operator, sensor and async client all send ``enterprise-id``;
    the simulator, like a gateway, answers 400 to a header that disagrees with the path."""
    from airflow_provider_oes.hooks.async_client import OESAsyncClient
    from airflow_provider_oes.operators.allocation import GetAllocationOperator
    from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

    enterprise = oes_simulator.enterprise_id
    aid = oes_simulator.add_allocation(final_status="cleared")
    hook = OESHook()
    assert hook.get_allocation(aid).id == aid
    assert [a.id for a in hook.list_allocations()] == [aid]
    assert hook.test_connection()[0]
    GetAllocationOperator(task_id="get", allocation_id=aid).execute({})  # type: ignore[arg-type]
    assert AllocationStatusSensor(task_id="wait", allocation_id=aid).poke({})  # type: ignore[arg-type]
    client = OESAsyncClient(hook.settings)
    try:
        assert (await client.get_allocation(aid, enterprise)).id == aid
        assert [r["id"] for r in await client.list_allocations(enterprise)] == [aid]
    finally:
        await client.aclose()
    headers = oes_simulator.enterprise_id_headers
    assert len(headers) == 7
    assert headers == [enterprise] * 7


def test_a_header_disagreeing_with_the_path_is_refused_by_the_gateway(oes_simulator: OESSimulator) -> None:
    """The simulator's side of the contract, seen through plain requests (the package never sends one)."""
    import requests

    url = f"{oes_simulator.url}/api/network/v1/enterprises/{oes_simulator.enterprise_id}/clients/allocations"
    auth = {"Authorization": f"Bearer {oes_simulator.token}"}
    assert requests.get(url, headers=auth, timeout=10).status_code == 200
    assert requests.get(url, headers={**auth, "enterprise-id": "someone-else"}, timeout=10).status_code == 400

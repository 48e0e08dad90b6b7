"""The async client's list filters and ``enterprise-id`` header, against ``httpx.MockTransport``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest

from airflow_provider_oes._api import ListQuery
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.hooks.async_client import OESAsyncClient
from airflow_provider_oes.models import AllocationStatus
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CONNECTION_ID = "c0ffee00-0000-4000-8000-000000000001"
PARTNER_ID = "0a0b0c0d-0000-4000-8000-000000000002"


def _client(
    records: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> tuple[OESAsyncClient, list[httpx.Request]]:
    """A client whose list endpoint answers ``records`` (with ``headers``); the requests it sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/clients/allocations"):
            return httpx.Response(200, json={"allocations": records}, headers=headers)
        return httpx.Response(200, json=allocation_body())

    settings = OESConnectionSettings(
        conn_id="oes_async", base_url="https://oes.example.test", token="t0ken-0123456789", enterprise_id="ent1"
    )
    return OESAsyncClient(settings, transport=httpx.MockTransport(handler)), seen


@pytest.fixture
async def client_and_requests() -> AsyncIterator[tuple[OESAsyncClient, list[httpx.Request]]]:
    client, seen = _client([])
    yield client, seen
    await client.aclose()


async def test_every_list_filter_reaches_the_query(
    client_and_requests: tuple[OESAsyncClient, list[httpx.Request]],
) -> None:
    client, seen = client_and_requests
    await client.list_allocations(
        "ent1",
        allocation_ids=[DEFAULT_ALLOCATION_ID],
        statuses=[AllocationStatus.CLEARED, "released"],
        types=["deallocation"],
        currencies=["ofctbtc", "ofcteth"],
        connection_ids=[CONNECTION_ID],
        partner_ids=[PARTNER_ID],
        created_on_or_after=datetime(2026, 11, 24, tzinfo=timezone.utc),
        created_before="2026-11-25T00:00:00Z",
        sort_field="updatedAt",
        sort_direction="DESC",
        page_number=2,
        page_size=1000,
    )
    (request,) = seen
    assert {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()} == {
        "pageNumber": "2",
        "pageSize": "1000",
        "allocationIds": DEFAULT_ALLOCATION_ID,
        "statuses": "cleared,released",
        "types": "deallocation",
        "currencies": "ofctbtc,ofcteth",
        "connectionIds": CONNECTION_ID,
        "partnerIds": PARTNER_ID,
        "createdOnOrAfter": "2026-11-24T00:00:00.000Z",
        "createdBefore": "2026-11-25T00:00:00.000Z",
        "sortField": "updatedAt",
        "sortDirection": "DESC",
    }
    assert request.headers["enterprise-id"] == "ent1"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (
            {"sort_field": "createdAt"},
            "sort_field values must be one of id, updatedAt, quantity, currency; got 'createdAt'",
        ),
        ({"sort_direction": "asc"}, "sort_direction values must be one of ASC, DESC; got 'asc'"),
        ({"types": ["transfer"]}, "types values must be one of allocation, deallocation; got 'transfer'"),
        ({"statuses": ["pending"]}, "'pending'"),
        ({"currencies": [""]}, "currencies must hold currency codes"),
        ({"partner_ids": ["p-1"]}, "partner_ids must hold UUIDs, got 'p-1'"),
        ({"connection_ids": []}, "connection_ids must not be empty"),
        ({"created_before": "2026-11-25"}, "created_before must carry a time zone"),
        ({"page_size": 1001}, "page_size must be an integer between 1 and 1000, got 1001"),
    ],
)
@pytest.mark.parametrize("method", ["list_allocations", "list_allocations_page"])
async def test_bad_filters_are_named_before_any_request(
    client_and_requests: tuple[OESAsyncClient, list[httpx.Request]], method: str, kwargs: dict[str, Any], needle: str
) -> None:
    assert needle in await _refused(client_and_requests, method, kwargs)


async def _refused(
    client_and_requests: tuple[OESAsyncClient, list[httpx.Request]], method: str, kwargs: dict[str, Any]
) -> str:
    """The message of the OESInvalidRequestError that ``method`` raises for ``kwargs``, having sent nothing."""
    client, seen = client_and_requests
    with pytest.raises(OESInvalidRequestError) as info:
        await getattr(client, method)("ent1", **kwargs)
    assert seen == []
    return str(info.value)


async def test_single_get_sends_the_enterprise_id_header(
    client_and_requests: tuple[OESAsyncClient, list[httpx.Request]],
) -> None:
    client, seen = client_and_requests
    await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent-with.dots_and-dashes")
    assert seen[0].headers["enterprise-id"] == "ent-with.dots_and-dashes"
    assert seen[0].headers["Authorization"] == "Bearer t0ken-0123456789"


async def test_list_allocations_is_the_page_without_its_date() -> None:
    """One code path: the same arguments send the same query, and the records are the page's records."""
    records = [allocation_body()["allocation"]]
    client, seen = _client(records, {"Date": "Wed, 25 Nov 2026 18:30:00 GMT"})
    try:
        arguments: dict[str, Any] = {"statuses": ["cleared"], "types": ["allocation"], "page_number": 1}
        assert await client.list_allocations("ent1", **arguments) == records
        page = await client.list_allocations_page("ent1", **arguments)
        assert page.records == records
        assert page.server_time == datetime(2026, 11, 25, 18, 30, tzinfo=timezone.utc).timestamp()
        # The feed's way: the filters as one ListQuery, the same query in the end.
        by_query = await client.list_allocations_page(
            "ent1", query=ListQuery(statuses=("cleared",), types=("allocation",)), page_number=1
        )
        assert by_query.records == records
    finally:
        await client.aclose()
    assert len(seen) == 3
    assert seen[0].url.query == seen[1].url.query == seen[2].url.query
    assert parse_qs(seen[0].url.query.decode()) == {
        "pageNumber": ["1"],
        "pageSize": ["100"],
        "statuses": ["cleared"],
        "types": ["allocation"],
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"query": ListQuery(statuses=("cleared",)), "page_size": 0}, "page_size must be an integer between 1"),
        (
            {"query": ListQuery(types=("allocation",)), "types": ["deallocation"]},
            "list filter(s) types given both by name and in query",
        ),
        ({"connection_ids": ["c-1"]}, "connection_ids must hold UUIDs, got 'c-1'"),
    ],
)
async def test_page_filters_are_checked_before_any_request(
    client_and_requests: tuple[OESAsyncClient, list[httpx.Request]], kwargs: dict[str, Any], needle: str
) -> None:
    assert needle in await _refused(client_and_requests, "list_allocations_page", kwargs)

"""Unit tests of :meth:`OESHook.list_allocations` and the ``enterprise-id`` header, against requests-mock."""

from __future__ import annotations

import inspect
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests_mock as rm

from airflow_provider_oes._api import LIST_FILTER_NAMES
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESInvalidRequestError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.models import Allocation, AllocationStatus
from tests._factories import DEFAULT_ALLOCATION_ID, DEFAULT_ENTERPRISE_ID, allocation_body, allocation_record
from tests._mock_api import BASE, PREFIX, TOKEN, URL, last_request, set_connection

LIST_URL = f"{BASE}{PREFIX}/{DEFAULT_ENTERPRISE_ID}/clients/allocations"


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, enterprise_id=DEFAULT_ENTERPRISE_ID, max_retries=2, retry_max_wait=1)


def _records(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [allocation_record(id=str(uuid.UUID(int=start + i + 1))) for i in range(count)]


def _query(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query, keep_blank_values=True).items()}


def _pages(requests_mock: rm.Mocker, pages: list[list[dict[str, Any]]]) -> None:
    """Answer page N of the list with ``pages[N]`` (an empty list past the end)."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        number = int(_query(request)["pageNumber"])
        return {"allocations": pages[number] if number < len(pages) else []}

    requests_mock.get(LIST_URL, json=answer)


def test_pages_until_a_short_page(conn: str, requests_mock: rm.Mocker) -> None:
    records = _records(7)
    _pages(requests_mock, [records[0:3], records[3:6], records[6:7]])
    listed = list(OESHook().list_allocations(page_size=3))
    assert [a.id for a in listed] == [r["id"] for r in records]
    assert all(isinstance(a, Allocation) and a.status is AllocationStatus.RESERVED for a in listed)
    assert [_query(r)["pageNumber"] for r in requests_mock.request_history] == ["0", "1", "2"]
    assert {_query(r)["pageSize"] for r in requests_mock.request_history} == {"3"}


def test_exact_multiple_of_page_size_ends_on_an_empty_page(conn: str, requests_mock: rm.Mocker) -> None:
    records = _records(4)
    _pages(requests_mock, [records[0:2], records[2:4]])
    assert len(list(OESHook().list_allocations(page_size=2))) == 4
    assert requests_mock.call_count == 3


def test_pages_are_fetched_lazily(conn: str, requests_mock: rm.Mocker) -> None:
    _pages(requests_mock, [_records(2), _records(2, start=2), []])
    listing = OESHook().list_allocations(page_size=2)
    assert requests_mock.call_count == 0
    next(listing)
    assert requests_mock.call_count == 1


def test_every_filter_reaches_the_query(conn: str, requests_mock: rm.Mocker) -> None:
    _pages(requests_mock, [[]])
    connection_id, partner_id = str(uuid.uuid4()), str(uuid.uuid4())
    listed = OESHook().list_allocations(
        "ent-2",
        allocation_ids=[DEFAULT_ALLOCATION_ID],
        statuses=["released"],
        types=["allocation", "deallocation"],
        currencies=["ofctbtc"],
        connection_ids=[connection_id],
        partner_ids=[partner_id],
        created_on_or_after="2026-11-24T00:00:00Z",
        created_before="2026-11-25T00:00:00+00:00",
        sort_field="quantity",
        sort_direction="DESC",
        page_size=50,
    )
    requests_mock.get(f"{BASE}{PREFIX}/ent-2/clients/allocations", json={"allocations": []})
    assert list(listed) == []
    request = last_request(requests_mock)
    assert _query(request) == {
        "pageNumber": "0",
        "pageSize": "50",
        "allocationIds": DEFAULT_ALLOCATION_ID,
        "statuses": "released",
        "types": "allocation,deallocation",
        "currencies": "ofctbtc",
        "connectionIds": connection_id,
        "partnerIds": partner_id,
        "createdOnOrAfter": "2026-11-24T00:00:00.000Z",
        "createdBefore": "2026-11-25T00:00:00.000Z",
        "sortField": "quantity",
        "sortDirection": "DESC",
    }
    assert request.headers["enterprise-id"] == "ent-2"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_bad_arguments_raise_when_called_before_any_request(conn: str, requests_mock: rm.Mocker) -> None:
    hook = OESHook()
    with pytest.raises(OESInvalidRequestError, match=r"statuses values must be one of .*'done'"):
        hook.list_allocations(statuses=["done"])
    with pytest.raises(OESInvalidRequestError, match=r"page_size must be an integer between 1 and 1000, got 5000"):
        hook.list_allocations(page_size=5000)
    with pytest.raises(OESInvalidRequestError, match=r"enterprise_id must not be '.' or '..'"):
        hook.list_allocations("..")
    assert requests_mock.call_count == 0


def test_no_enterprise_anywhere(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch)
    with pytest.raises(OESInvalidRequestError, match="no enterprise id"):
        OESHook().list_allocations()


def test_transient_errors_are_retried_per_page(conn: str, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    records = _records(3)
    requests_mock.get(
        LIST_URL,
        [
            {"json": {"allocations": records[0:2]}},
            {"status_code": 503, "json": {"error": "busy"}},
            {"exc": requests.exceptions.ConnectTimeout},
            {"json": {"allocations": records[2:3]}},
        ],
    )
    assert [a.id for a in OESHook().list_allocations(page_size=2)] == [r["id"] for r in records]
    assert [_query(r)["pageNumber"] for r in requests_mock.request_history] == ["0", "1", "1", "1"]
    assert len(no_sleep) == 2


def test_errors_left_after_retries_raise_while_iterating(
    conn: str, requests_mock: rm.Mocker, no_sleep: list[float]
) -> None:
    requests_mock.get(LIST_URL, status_code=500, json={"error": "boom"})
    with pytest.raises(OESServerError):
        list(OESHook().list_allocations())
    assert requests_mock.call_count == 3  # max_retries=2
    requests_mock.get(LIST_URL, exc=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(OESConnectionError):
        list(OESHook().list_allocations())


def test_permanent_error_is_not_retried_and_token_is_not_shown(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, status_code=401, json={"error": f"bad token {TOKEN}"})
    with pytest.raises(OESAuthenticationError) as info:
        list(OESHook().list_allocations())
    assert requests_mock.call_count == 1
    assert TOKEN not in str(info.value)


def test_invalid_record_raises_naming_it(conn: str, requests_mock: rm.Mocker) -> None:
    bad = allocation_record(id=str(uuid.UUID(int=9)), amount={"currency": "ofctbtc", "quantity": 1.5})
    _pages(requests_mock, [[*_records(1), bad]])
    listing = OESHook().list_allocations()
    assert next(listing).id == str(uuid.UUID(int=1))
    with pytest.raises(OESResponseError, match=r"record 1 \(id '00000000-0000-0000-0000-000000000009'\)"):
        next(listing)


@pytest.mark.parametrize("body", [{"allocations": {}}, {"allocation": []}, [], "not json"])
def test_invalid_list_body(conn: str, requests_mock: rm.Mocker, body: Any) -> None:
    if body == "not json":
        requests_mock.get(LIST_URL, text=body)
    else:
        requests_mock.get(LIST_URL, json=body)
    with pytest.raises(OESResponseError):
        list(OESHook().list_allocations())


def test_repeated_ids_are_yielded_once(conn: str, requests_mock: rm.Mocker) -> None:
    # A record that moved back across a page boundary (e.g. sorted by updatedAt) comes again: once is enough.
    records = _records(4)
    _pages(requests_mock, [records[0:2], [records[1], records[2]], records[3:4]])
    assert [a.id for a in OESHook().list_allocations(page_size=2)] == [r["id"] for r in records]


def test_server_ignoring_page_number_does_not_loop_forever(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, json={"allocations": _records(2)})
    with pytest.raises(OESResponseError, match="only records already listed"):
        list(OESHook().list_allocations(page_size=2))
    assert requests_mock.call_count == 2


def test_more_records_than_asked_for_is_refused(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, json={"allocations": _records(3)})
    with pytest.raises(OESResponseError, match="more than the 2 asked for"):
        list(OESHook().list_allocations(page_size=2))


def test_single_get_sends_the_enterprise_id_header(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body())
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert last_request(requests_mock).headers["enterprise-id"] == DEFAULT_ENTERPRISE_ID


def test_connection_test_sends_the_enterprise_id_header(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, status_code=404, json={"error": "not found"})
    ok, _ = OESHook().test_connection()
    assert ok
    assert last_request(requests_mock).headers["enterprise-id"] == DEFAULT_ENTERPRISE_ID


def test_the_hook_spells_out_exactly_the_one_filter_set() -> None:
    """list_allocations keeps explicit keywords for DAG authors; they must be ListFilters, no more, no less."""
    keywords = [
        name
        for name, parameter in inspect.signature(OESHook.list_allocations).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "page_size"
    ]
    assert keywords == list(LIST_FILTER_NAMES)

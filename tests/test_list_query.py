"""The list endpoint's query, built and validated in one place (:func:`_api.list_query_params`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_oes._api import (
    LIST_FILTER_NAMES,
    LIST_FILTER_QUERY_NAMES,
    LIST_SORT_DIRECTIONS,
    LIST_SORT_FIELDS,
    MAX_LIST_PAGE_SIZE,
    ListQuery,
    enterprise_id_header_value,
    list_query_params,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.models import STATUS_VALUES, TYPE_VALUES, AllocationStatus, AllocationType

UUID_A = "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
UUID_B = "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"


def test_defaults_are_first_page_of_100() -> None:
    assert list_query_params() == {"pageNumber": "0", "pageSize": "100"}


def test_every_filter_by_its_query_name() -> None:
    params = list_query_params(
        allocation_ids=[UUID_A, UUID_B],
        statuses=["cleared", "released"],
        types=["deallocation"],
        currencies=["ofctbtc", "ofcteth"],
        connection_ids=[UUID_B],
        partner_ids=(UUID_A,),
        created_on_or_after="2026-11-24T00:00:00Z",
        created_before=datetime(2026, 11, 25, 1, 30, tzinfo=timezone(timedelta(hours=1))),
        sort_field="updatedAt",
        sort_direction="DESC",
        page_number=3,
        page_size=1000,
    )
    assert params == {
        "pageNumber": "3",
        "pageSize": "1000",
        "allocationIds": f"{UUID_A},{UUID_B}",
        "statuses": "cleared,released",
        "types": "deallocation",
        "currencies": "ofctbtc,ofcteth",
        "connectionIds": UUID_B,
        "partnerIds": UUID_A,
        "createdOnOrAfter": "2026-11-24T00:00:00.000Z",
        "createdBefore": "2026-11-25T00:30:00.000Z",  # converted to UTC
        "sortField": "updatedAt",
        "sortDirection": "DESC",
    }


def test_enum_members_count_as_their_values_and_sets_are_sorted() -> None:
    params = list_query_params(
        statuses={AllocationStatus.RESERVED, AllocationStatus.CLEARED}, types=[AllocationType.ALLOCATION]
    )
    assert params["statuses"] == "cleared,reserved"
    assert params["types"] == "allocation"


def test_every_spec_value_is_accepted() -> None:
    for field in LIST_SORT_FIELDS:
        for direction in LIST_SORT_DIRECTIONS:
            assert list_query_params(sort_field=field, sort_direction=direction)["sortField"] == field
    assert list_query_params(statuses=list(STATUS_VALUES))["statuses"] == "cleared,released,reserved"
    assert list_query_params(types=list(TYPE_VALUES))["types"] == "allocation,deallocation"


@pytest.mark.parametrize(
    ("kwargs", "named", "shown"),
    [
        ({"statuses": ["cleared", "pending"]}, "statuses", "'pending'"),
        ({"statuses": "cleared"}, "statuses", "'cleared'"),  # a bare string, not a list
        ({"statuses": []}, "statuses", "pass None"),
        ({"types": ["Allocation"]}, "types", "'Allocation'"),
        ({"currencies": ["ofc btc"]}, "currencies", "'ofc btc'"),
        ({"currencies": ["a,b"]}, "currencies", "'a,b'"),
        ({"currencies": [7]}, "currencies", "7"),
        ({"allocation_ids": [UUID_A, "not-a-uuid"]}, "allocation_ids", "'not-a-uuid'"),
        ({"connection_ids": ["x"]}, "connection_ids", "'x'"),
        ({"partner_ids": [UUID_A[:-1]]}, "partner_ids", repr(UUID_A[:-1])),
        ({"created_on_or_after": "yesterday"}, "created_on_or_after", "'yesterday'"),
        ({"created_before": "2026-11-24T00:00:00"}, "created_before", "time zone"),
        ({"created_before": datetime(2026, 11, 24)}, "created_before", "time zone"),
        ({"created_before": 1764000000}, "created_before", "1764000000"),
        ({"sort_field": "createdAt"}, "sort_field", "'createdAt'"),
        ({"sort_direction": "desc"}, "sort_direction", "'desc'"),
        ({"page_size": 0}, "page_size", "0"),
        ({"page_size": MAX_LIST_PAGE_SIZE + 1}, "page_size", str(MAX_LIST_PAGE_SIZE + 1)),
        ({"page_size": "100"}, "page_size", "'100'"),
        ({"page_number": -1}, "page_number", "-1"),
        ({"page_number": True}, "page_number", "True"),
    ],
)
def test_bad_values_are_named(kwargs: dict[str, Any], named: str, shown: str) -> None:
    with pytest.raises(OESInvalidRequestError) as info:
        list_query_params(**kwargs)
    message = str(info.value)
    assert named in message
    assert shown in message


def test_reversed_creation_window_is_refused() -> None:
    with pytest.raises(OESInvalidRequestError, match=r"created_on_or_after \(2026-11-25T00:00:01.000Z\) must not"):
        list_query_params(created_on_or_after="2026-11-25T00:00:01Z", created_before="2026-11-25T00:00:00Z")
    # Equal bounds are a valid window: the spec describes createdBefore as "on or before".
    same = list_query_params(created_on_or_after="2026-11-25T00:00:00Z", created_before="2026-11-25T00:00:00Z")
    assert same["createdOnOrAfter"] == same["createdBefore"] == "2026-11-25T00:00:00.000Z"


def test_enterprise_header_value() -> None:
    assert enterprise_id_header_value("62a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4") == "62a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4"
    # Outside ASCII: percent-encoded UTF-8, as in the path (HTTP clients cannot send it raw).
    assert enterprise_id_header_value("entreprise-é") == "entreprise-%C3%A9"


# One valid value for every filter of ListFilters, and the query parameter it must set.
_SAMPLES: dict[str, tuple[object, str]] = {
    "allocation_ids": ([UUID_A], "allocationIds"),
    "statuses": (["cleared"], "statuses"),
    "types": (["allocation"], "types"),
    "currencies": (["ofctbtc"], "currencies"),
    "connection_ids": ([UUID_A], "connectionIds"),
    "partner_ids": ([UUID_B], "partnerIds"),
    "created_on_or_after": ("2026-11-24T00:00:00Z", "createdOnOrAfter"),
    "created_before": ("2026-11-25T00:00:00Z", "createdBefore"),
    "sort_field": ("id", "sortField"),
    "sort_direction": ("DESC", "sortDirection"),
}


def test_every_filter_of_the_one_set_reaches_the_query() -> None:
    """A filter added to ListFilters but not serialised (or the other way round) fails here."""
    assert set(LIST_FILTER_NAMES) == set(_SAMPLES)
    for name in LIST_FILTER_NAMES:
        value, query = _SAMPLES[name]
        params = list_query_params(**{name: value})  # type: ignore[misc]
        assert set(params) == {"pageNumber", "pageSize", query}, name
    assert {name: query for name, (_, query) in _SAMPLES.items() if name in LIST_FILTER_QUERY_NAMES} == (
        LIST_FILTER_QUERY_NAMES
    )


def test_a_misspelt_filter_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match=r"'statuss'.*the list filters are allocation_ids, statuses, types"):
        list_query_params(statuss=["cleared"])  # type: ignore[call-arg]


def test_one_query_object_for_every_caller() -> None:
    """ListQuery: checked when built, the same parameters as list_query_params, a canonical form for keys."""
    query = ListQuery(statuses=("released", "cleared", "cleared"), connection_ids=[UUID_B, UUID_A])  # type: ignore[arg-type]
    assert query.statuses == ("released", "cleared", "cleared")  # as given: the URL keeps the caller's order
    assert query.params(page_size=5) == list_query_params(
        statuses=["released", "cleared", "cleared"], connection_ids=[UUID_B, UUID_A], page_size=5
    )
    canonical = query.canonical()
    assert canonical == ListQuery(statuses=("cleared", "released"), connection_ids=(UUID_A, UUID_B)).canonical()
    assert hash(canonical) == hash(ListQuery(statuses=("cleared", "released"), connection_ids=(UUID_A, UUID_B)))
    assert canonical.filter_params() == {"statuses": "cleared,released", "connectionIds": f"{UUID_A},{UUID_B}"}
    assert ListQuery.of(**canonical.filters()) == canonical
    with pytest.raises(OESInvalidRequestError, match="'pending'"):
        ListQuery(statuses=("cleared", "pending"))
    with pytest.raises(OESInvalidRequestError, match="statuses must not be empty"):
        ListQuery(statuses=())
    with pytest.raises(OESInvalidRequestError, match="'a,b'"):
        ListQuery(currencies=("a,b",))


def test_query_matches_locally_what_the_api_would_filter() -> None:
    from airflow_provider_oes.models import Allocation
    from tests._factories import allocation_body

    record = allocation_body(status="cleared", connectionId=UUID_B)["allocation"]
    allocation = Allocation.from_json_dict(record)
    assert ListQuery(statuses=("cleared",)).matches(allocation)
    assert not ListQuery(statuses=("released",)).matches(allocation)
    assert ListQuery(types=(str(allocation.type),), currencies=(allocation.amount.currency,)).matches(allocation)
    assert not ListQuery(currencies=("other",)).matches(allocation)
    assert ListQuery(connection_ids=(UUID_A, UUID_B)).matches(allocation)
    assert not ListQuery(connection_ids=(UUID_A,)).matches(allocation)

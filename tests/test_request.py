"""The steps of one API request (:mod:`airflow_provider_oes._request`), shared by the sync and async clients."""

from __future__ import annotations

import json

import pytest

from airflow_provider_oes._api import MAX_LIST_RESPONSE_BYTES, MAX_RESPONSE_BYTES
from airflow_provider_oes._request import allocation_call, list_call, redacting
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESNotFoundError,
    OESRateLimitError,
    OESResponseError,
)
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record

TOKEN = "request-steps-token-0123456789"


def _settings(token: str = TOKEN) -> OESConnectionSettings:
    return OESConnectionSettings(conn_id="c1", base_url="https://oes.example.test", token=token)


def test_allocation_call_describes_the_single_get() -> None:
    call = allocation_call(_settings(), DEFAULT_ALLOCATION_ID, "a/b")
    assert call.kind == "single"
    assert call.path == f"/api/network/v1/enterprises/a%2Fb/clients/allocations/{DEFAULT_ALLOCATION_ID}"
    assert call.params is None
    assert call.limit == MAX_RESPONSE_BYTES
    assert call.what == f"allocation {DEFAULT_ALLOCATION_ID!r} of enterprise 'a/b'"


def test_list_call_describes_the_list_endpoint() -> None:
    call = list_call(_settings(), "ent1", {"pageSize": "5"}, kind="list")
    assert call.path == "/api/network/v1/enterprises/ent1/clients/allocations"
    assert call.params == {"pageSize": "5"}
    assert call.limit == MAX_LIST_RESPONSE_BYTES
    assert call.what == "the allocations list of enterprise 'ent1'"
    records = [allocation_record(), {"id": "x"}]
    assert call.answer(200, json.dumps({"allocations": records}).encode(), None) == records


@pytest.mark.parametrize("kind", ["list", "id_batch", "feed_page"])
def test_the_caller_names_the_kind_whatever_the_query(kind: str) -> None:
    # The same query string, three kinds: the metrics never guess the kind from the parameters.
    params = {"pageSize": "5", "statuses": "cleared,released", "sortField": "updatedAt", "allocationIds": "x"}
    assert list_call(_settings(), "ent1", params, kind=kind).kind == kind


def test_check_token() -> None:
    allocation_call(_settings(), DEFAULT_ALLOCATION_ID, "ent1").check_token()  # a token: nothing raised
    with pytest.raises(OESAuthenticationError, match="'c1' has no access token"):
        allocation_call(_settings(token=""), DEFAULT_ALLOCATION_ID, "ent1").check_token()


def test_answer_parses_200_and_maps_other_statuses() -> None:
    call = allocation_call(_settings(), DEFAULT_ALLOCATION_ID, "ent1")
    allocation = call.answer(200, json.dumps(allocation_body(status="cleared")).encode(), None)
    assert allocation.is_cleared
    with pytest.raises(OESNotFoundError) as info:
        call.answer(404, b'{"requestId": "r-1"}', None)
    assert info.value.request_id == "r-1"
    assert info.value.allocation_id == DEFAULT_ALLOCATION_ID
    with pytest.raises(OESRateLimitError) as limited:
        call.answer(429, b"", "3")
    assert limited.value.retry_after == 3.0
    with pytest.raises(OESResponseError, match="contains this connection's access token"):
        call.answer(200, json.dumps(allocation_body(notes=TOKEN)).encode(), None)


def test_transport_error_names_what_was_asked() -> None:
    call = list_call(_settings(), "ent1", {}, kind="list")
    exc = call.transport_error(ConnectionResetError(), timed_out=False)
    assert type(exc) is OESConnectionError
    assert "the allocations list of enterprise 'ent1'" in str(exc)


def test_a_call_about_something_else_names_the_subject_its_caller_gave() -> None:
    from airflow_provider_oes._request import ApiCall

    call: ApiCall[bytes] = ApiCall(
        _settings(),
        "/p",
        params=None,
        limit=10,
        parse=bytes,
        allocation_id=None,
        enterprise_id="ent1",
        kind="settlement_single",
        subject="settlement 'x'",
    )
    assert call.what == "settlement 'x' of enterprise 'ent1'"
    with pytest.raises(OESNotFoundError) as info:
        call.answer(404, b"", None)
    assert str(info.value) == (
        "OES API answered HTTP 404 for settlement 'x' of enterprise 'ent1'. "
        "Check the id, and that this enterprise's client is a party to it."
    )
    exc = call.transport_error(ConnectionResetError(), timed_out=False)
    assert "for settlement 'x' of enterprise 'ent1': ConnectionResetError" in str(exc)
    # Without a subject, an allocation call keeps the allocation's own hint.
    with pytest.raises(OESNotFoundError, match="Check the allocation id, and that it belongs"):
        allocation_call(_settings(), DEFAULT_ALLOCATION_ID, "ent1").answer(404, b"", None)


def test_redacting_strips_the_token_and_lets_the_error_through() -> None:
    with pytest.raises(OESNotFoundError) as info, redacting(TOKEN):
        raise OESNotFoundError(f"echo {TOKEN}", error=TOKEN)
    assert TOKEN not in str(info.value)
    assert info.value.error == "***"
    assert info.value.__suppress_context__


def test_redacting_leaves_other_exceptions_and_success_alone() -> None:
    with pytest.raises(ValueError, match=TOKEN), redacting(TOKEN):
        raise ValueError(TOKEN)
    with redacting(TOKEN):
        value = 1
    assert value == 1

"""Unit tests of :class:`GetAllocationOperator` and :class:`ListAllocationsOperator` against requests-mock (no network, no DB)."""

from __future__ import annotations

import inspect
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests_mock as rm

from airflow_provider_oes._api import LIST_FILTER_NAMES
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.operators.allocation import GetAllocationOperator, ListAllocationsOperator
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record
from tests._mock_api import BASE, PREFIX, TOKEN, URL, last_request, set_connection


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, enterprise_id="ent1", max_retries=1)


def operator(**kwargs: Any) -> GetAllocationOperator:
    kwargs.setdefault("task_id", "get")
    kwargs.setdefault("allocation_id", DEFAULT_ALLOCATION_ID)
    return GetAllocationOperator(**kwargs)


def test_template_fields() -> None:
    assert tuple(GetAllocationOperator.template_fields) == ("allocation_id", "enterprise_id", "oes_conn_id")


def test_templated_fields_render_and_the_hook_uses_the_rendered_connection() -> None:
    op = operator(
        allocation_id="{{ params.aid }}", enterprise_id="{{ params.ent }}", oes_conn_id="oes_{{ params.env }}"
    )
    op.render_template_fields({"params": {"aid": DEFAULT_ALLOCATION_ID, "ent": "ent9", "env": "prod"}})
    assert (op.allocation_id, op.enterprise_id, op.oes_conn_id) == (DEFAULT_ALLOCATION_ID, "ent9", "oes_prod")
    assert op.hook.oes_conn_id == "oes_prod"


@pytest.mark.parametrize("status", ["reserved", "cleared", "released", "pending_review"])
def test_execute_returns_api_json_whatever_the_status(requests_mock: rm.Mocker, status: str) -> None:
    body = allocation_body(status=status, amount={"currency": "ofcteth", "quantity": "1" * 42}, newField={"x": 1})
    requests_mock.get(URL, json=body)
    result = operator().execute({})
    assert result == body["allocation"]
    assert result["amount"]["quantity"] == "1" * 42
    assert json.loads(json.dumps(result)) == result
    assert requests_mock.call_count == 1


def test_enterprise_id_falls_back_to_connection_and_can_be_overridden(requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, json=allocation_body())
    operator().execute({})
    assert last_request(requests_mock).url == URL
    operator(enterprise_id="a/b").execute({})
    assert "/enterprises/a%2Fb/clients/" in last_request(requests_mock).url


def test_custom_conn_id(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, "oes_other", host="https://app.bitgo.com", password="other-token-xyz")
    requests_mock.get(rm.ANY, json=allocation_body())
    op = operator(oes_conn_id="oes_other", enterprise_id="e2")
    assert op.hook.oes_conn_id == "oes_other"
    op.execute({})
    assert last_request(requests_mock).url.startswith("https://app.bitgo.com/api/network/v1/enterprises/e2/")
    assert last_request(requests_mock).headers["Authorization"] == "Bearer other-token-xyz"


@pytest.mark.parametrize(
    ("status", "cls"), [(401, OESAuthenticationError), (404, OESNotFoundError), (400, OESInvalidRequestError)]
)
def test_errors_propagate(requests_mock: rm.Mocker, status: int, cls: type[Exception]) -> None:
    requests_mock.get(URL, status_code=status, json={"error": "x"})
    with pytest.raises(cls):
        operator().execute({})
    assert requests_mock.call_count == 1


def test_transient_errors_propagate_after_retries(requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    requests_mock.get(URL, status_code=503)
    with pytest.raises(OESServerError):
        operator().execute({})
    assert requests_mock.call_count == 2


def test_bad_body_propagates(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, text="not json")
    with pytest.raises(OESResponseError):
        operator().execute({})


def test_bad_id_sends_nothing(requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError, match="'123'"):
        operator(allocation_id="123").execute({})
    assert requests_mock.call_count == 0


def test_logs_description_not_token(requests_mock: rm.Mocker, capsys: pytest.CaptureFixture[str]) -> None:
    requests_mock.get(URL, json=allocation_body(status="cleared", reason=None))
    operator().execute({})
    out = capsys.readouterr().out
    assert f"allocation {DEFAULT_ALLOCATION_ID} of 100000000 ofctbtc is cleared" in out
    assert TOKEN not in out


_CONNECTION_ID = "c0ffee00-0000-4000-8000-000000000001"
_PARTNER_ID = "0a0b0c0d-0000-4000-8000-000000000002"


def test_list_operator_takes_exactly_the_one_filter_set() -> None:
    """The operator's own keywords, besides the filters of ListFilters, are what only it has."""
    keywords = set(inspect.signature(ListAllocationsOperator.__init__).parameters) - {"self", "kwargs"}
    own = {"enterprise_id", "page_size", "max_records", "output_path", "oes_conn_id"}
    assert keywords - own == set(LIST_FILTER_NAMES)


def test_list_operator_sends_every_filter_it_was_given(requests_mock: rm.Mocker) -> None:
    """Each filter reaches the query under its own name, after templates are rendered."""
    record = allocation_record()
    requests_mock.get(f"{BASE}{PREFIX}/ent7/clients/allocations", json={"allocations": [record]})
    op = ListAllocationsOperator(
        task_id="list",
        enterprise_id="ent7",
        allocation_ids=[DEFAULT_ALLOCATION_ID],
        statuses=["{{ params.status }}"],
        types=["allocation"],
        currencies=["ofctbtc", "ofcteth"],
        connection_ids=[_CONNECTION_ID],
        partner_ids=[_PARTNER_ID],
        created_on_or_after="{{ params.start }}",
        created_before="2026-11-25T00:00:00Z",
        sort_field="updatedAt",
        sort_direction="DESC",
        page_size=7,
    )
    op.render_template_fields({"params": {"status": "released", "start": "2026-11-24T00:00:00Z"}})
    assert op.execute({}) == [record]  # type: ignore[arg-type]
    query = {k: v[0] for k, v in parse_qs(urlsplit(last_request(requests_mock).url).query).items()}
    assert query == {
        "pageNumber": "0",
        "pageSize": "7",
        "allocationIds": DEFAULT_ALLOCATION_ID,
        "statuses": "released",
        "types": "allocation",
        "currencies": "ofctbtc,ofcteth",
        "connectionIds": _CONNECTION_ID,
        "partnerIds": _PARTNER_ID,
        "createdOnOrAfter": "2026-11-24T00:00:00.000Z",
        "createdBefore": "2026-11-25T00:00:00.000Z",
        "sortField": "updatedAt",
        "sortDirection": "DESC",
    }


def test_list_operator_pages_by_the_default_page_size(requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{BASE}{PREFIX}/ent1/clients/allocations", json={"allocations": []})
    assert ListAllocationsOperator(task_id="list").execute({}) == []  # type: ignore[arg-type]
    query = parse_qs(urlsplit(last_request(requests_mock).url).query)
    assert query == {"pageNumber": ["0"], "pageSize": ["100"]}

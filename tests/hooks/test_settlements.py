"""Unit tests of the hook's settlement reads (get_settlement, the lists, partners), against requests-mock."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_oes.exceptions import (
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.settlement_models import SettlementStatus
from tests._factories import DEFAULT_ENTERPRISE_ID
from tests._mock_api import BASE, PREFIX, TOKEN, last_request, set_connection
from tests._settlement_factories import (
    PARTNER_ID,
    SETTLEMENT_ID,
    assigned_dispute_record,
    details_body,
    dispute_record,
    partner_record,
    settlement_record,
    transfer_record,
)

if TYPE_CHECKING:
    import requests_mock as rm

ENTERPRISE = f"{BASE}{PREFIX}/{DEFAULT_ENTERPRISE_ID}"
DETAIL_URL = f"{ENTERPRISE}/clients/settlements/{SETTLEMENT_ID}"
LIST_URL = f"{ENTERPRISE}/clients/settlements"
TRANSFERS_URL = f"{ENTERPRISE}/clients/settlementTransfers"
DISPUTES_URL = f"{ENTERPRISE}/clients/settlement/disputes"
PARTNERS_URL = f"{ENTERPRISE}/partners"


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> OESHook:
    set_connection(monkeypatch, enterprise_id=DEFAULT_ENTERPRISE_ID, max_retries=2, retry_max_wait=1)
    return OESHook()


def _query(request: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query, keep_blank_values=True)


def _transfers(count: int, start: int = 0, status: str = "completed") -> list[dict[str, Any]]:
    return [transfer_record(start + i + 1, status=status, settlementStatus=status) for i in range(count)]


# --- get_settlement -------------------------------------------------------------------------------------------


def test_get_settlement_returns_settlement_transfers_and_disputes(hook: OESHook, requests_mock: rm.Mocker) -> None:
    body = details_body(
        "completed",
        transfers=_transfers(2),
        settlementDisputes=[dispute_record(retracted=True)],
        settlingDisputes=[assigned_dispute_record()],
    )
    requests_mock.get(DETAIL_URL, json=body)
    details = hook.get_settlement(SETTLEMENT_ID)
    assert details.settlement.status is SettlementStatus.COMPLETED
    assert [t.id for t in details.settlement_transfers] == [t["id"] for t in body["settlementTransfers"]]
    assert details.to_json_dict() == body
    request = last_request(requests_mock)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["enterprise-id"] == DEFAULT_ENTERPRISE_ID
    assert _query(request) == {"pageNumber": ["0"], "pageSize": ["100"]}


def test_get_settlement_pages_its_transfers_until_a_short_page(hook: OESHook, requests_mock: rm.Mocker) -> None:
    pages = [_transfers(3), _transfers(3, 3), _transfers(1, 6)]
    requests_mock.get(
        DETAIL_URL,
        [{"json": details_body("completed", transfers=page)} for page in pages],
    )
    details = hook.get_settlement(SETTLEMENT_ID, currencies=["ofctbtc", "ofcteth"], page_size=3)
    assert len(details.settlement_transfers) == 7
    assert len({t.id for t in details.settlement_transfers}) == 7
    queries = [_query(r) for r in requests_mock.request_history]
    assert [q["pageNumber"] for q in queries] == [["0"], ["1"], ["2"]]
    assert all(q["currencies"] == ["ofctbtc", "ofcteth"] for q in queries)  # repeated key, not a comma list


def test_get_settlement_stops_when_the_route_ignores_paging(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DETAIL_URL, json=details_body("completed", transfers=_transfers(2)))
    details = hook.get_settlement(SETTLEMENT_ID, page_size=2)
    assert len(details.settlement_transfers) == 2
    assert requests_mock.call_count == 2  # page 1 repeated page 0: nothing new, done


def test_get_settlement_starts_over_when_the_settlement_changes_between_pages(
    hook: OESHook, requests_mock: rm.Mocker
) -> None:
    pending = details_body("pending", transfers=_transfers(2, status="pending"))
    done_1 = details_body("completed", transfers=_transfers(2))
    done_1["settlement"]["updatedAt"] = "2026-11-24T11:00:00.000Z"
    done_2 = json.loads(json.dumps(done_1))
    done_2["settlementTransfers"] = _transfers(1, 2)
    requests_mock.get(DETAIL_URL, [{"json": pending}, {"json": done_1}, {"json": done_1}, {"json": done_2}])
    details = hook.get_settlement(SETTLEMENT_ID, page_size=2)
    assert details.settlement.status is SettlementStatus.COMPLETED
    assert {t.status for t in details.settlement_transfers} == {"completed"}
    assert len(details.settlement_transfers) == 3


def test_get_settlement_gives_up_on_a_settlement_that_keeps_changing(hook: OESHook, requests_mock: rm.Mocker) -> None:
    answers = []
    for minute in range(10):
        body = details_body("pending", transfers=_transfers(1))
        body["settlement"]["updatedAt"] = f"2026-11-24T10:{minute:02d}:00.000Z"
        answers.append({"json": body})
    requests_mock.get(DETAIL_URL, answers)
    with pytest.raises(OESResponseError, match="changed while its transfers were read"):
        hook.get_settlement(SETTLEMENT_ID, page_size=1)


def test_get_settlement_keeps_a_numeric_usd_value_exact(hook: OESHook, requests_mock: rm.Mocker) -> None:
    body = details_body("completed", transfers=_transfers(1))
    text = json.dumps(body).replace('"usdValue": "2500000"', '"usdValue": 9007199254740993.07')
    requests_mock.get(DETAIL_URL, text=text)
    assert hook.get_settlement(SETTLEMENT_ID).settlement_transfers[0].usd_value == "9007199254740993.07"


@pytest.mark.parametrize(
    "body",
    [
        {"settlement": settlement_record("pending")},
        {"settlements": []},
        [],
        "not an object",
    ],
)
def test_get_settlement_refuses_a_malformed_answer(hook: OESHook, requests_mock: rm.Mocker, body: Any) -> None:
    requests_mock.get(DETAIL_URL, json=body)
    with pytest.raises(OESResponseError, match=f"settlement '{SETTLEMENT_ID}'"):
        hook.get_settlement(SETTLEMENT_ID)


def test_get_settlement_refuses_another_settlement(hook: OESHook, requests_mock: rm.Mocker) -> None:
    other = "7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b"
    body = details_body("completed", transfers=[])
    body["settlement"]["id"] = other
    requests_mock.get(DETAIL_URL, json=body)
    with pytest.raises(OESResponseError, match=f"answered with settlement '{other}'"):
        hook.get_settlement(SETTLEMENT_ID)


def test_get_settlement_refuses_a_completed_without_finalized_at(hook: OESHook, requests_mock: rm.Mocker) -> None:
    body = details_body("completed")
    del body["settlement"]["finalizedAt"]
    requests_mock.get(DETAIL_URL, json=body)
    with pytest.raises(OESResponseError, match="must carry 'finalizedAt'"):
        hook.get_settlement(SETTLEMENT_ID)


def test_a_400_with_an_empty_body_is_a_clear_error(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DETAIL_URL, status_code=400, text="")
    with pytest.raises(OESInvalidRequestError) as caught:
        hook.get_settlement(SETTLEMENT_ID)
    message = str(caught.value)
    assert f"HTTP 400 for settlement '{SETTLEMENT_ID}' of enterprise '{DEFAULT_ENTERPRISE_ID}'" in message
    assert "allocation" not in message
    assert caught.value.error is None
    assert requests_mock.call_count == 1


def test_a_404_names_the_settlement_and_what_to_check(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DETAIL_URL, status_code=404, json={"error": "Settlement not found"})
    with pytest.raises(OESNotFoundError, match="party to it") as caught:
        hook.get_settlement(SETTLEMENT_ID)
    assert "Settlement not found" in str(caught.value)


def test_a_403_names_the_scope(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, status_code=403, json={"error": "no license"})
    with pytest.raises(OESPermissionDeniedError, match="settlement_network_read") as caught:
        list(hook.list_settlements())
    assert "the settlements list" in str(caught.value)


def test_transient_errors_are_retried_with_the_connection_policy(
    hook: OESHook, requests_mock: rm.Mocker, no_sleep: list[float]
) -> None:
    requests_mock.get(DETAIL_URL, [{"status_code": 503, "json": {"error": "x"}}, {"json": details_body("pending")}])
    assert hook.get_settlement(SETTLEMENT_ID).settlement.status is SettlementStatus.PENDING
    assert requests_mock.call_count == 2
    assert len(no_sleep) == 1
    requests_mock.get(DETAIL_URL, status_code=500, json={"error": "down"})
    with pytest.raises(OESServerError):
        hook.get_settlement(SETTLEMENT_ID)


def test_the_token_never_reaches_the_error(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DETAIL_URL, status_code=400, json={"error": f"bad header Bearer {TOKEN}"})
    with pytest.raises(OESInvalidRequestError) as caught:
        hook.get_settlement(SETTLEMENT_ID)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value.args)
    requests_mock.get(DETAIL_URL, json={**details_body("pending"), "echo": TOKEN})
    with pytest.raises(OESResponseError, match="contains this connection's access token") as refused:
        hook.get_settlement(SETTLEMENT_ID)
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"settlement_id": "not-a-uuid"}, "settlement_id must be a UUID"),
        ({"settlement_id": SETTLEMENT_ID, "currencies": "ofctbtc"}, "currencies must be a list"),
        ({"settlement_id": SETTLEMENT_ID, "currencies": []}, "currencies must not be empty"),
        ({"settlement_id": SETTLEMENT_ID, "page_size": 0}, "page_size must be an integer between 1 and 1000"),
        ({"settlement_id": SETTLEMENT_ID, "enterprise_id": ".."}, "enterprise_id must not be"),
    ],
)
def test_bad_arguments_fail_before_any_request(
    hook: OESHook, requests_mock: rm.Mocker, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(OESInvalidRequestError, match=named):
        hook.get_settlement(**kwargs)
    assert requests_mock.call_count == 0


# --- lists ----------------------------------------------------------------------------------------------------


def _listed(count: int, start: int = 0, status: str = "pending") -> list[dict[str, Any]]:
    return [
        {**settlement_record(status, id=f"00000000-0000-4000-9000-{start + i + 1:012d}"), "transferDirection": "send"}
        for i in range(count)
    ]


def test_list_settlements_sends_repeated_keys_and_pages(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, [{"json": {"settlements": _listed(2)}}, {"json": {"settlements": _listed(1, 2)}}])
    iterator = hook.list_settlements(
        statuses=["pending", SettlementStatus.FAILED],
        partner_ids={PARTNER_ID},
        only_show_disputed=True,
        page_size=2,
    )
    assert requests_mock.call_count == 0  # lazy
    settlements = list(iterator)
    assert len(settlements) == 3
    assert settlements[0].transfer_direction == "send"
    first = _query(requests_mock.request_history[0])
    assert first["statuses"] == ["pending", "failed"]
    assert first["partnerIds"] == [PARTNER_ID]
    assert first["onlyShowDisputed"] == ["true"]
    assert [_query(r)["pageNumber"] for r in requests_mock.request_history] == [["0"], ["1"]]


def test_only_show_disputed_false_is_not_sent(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, json={"settlements": []})
    assert list(hook.list_settlements(only_show_disputed=False)) == []
    assert "onlyShowDisputed" not in _query(last_request(requests_mock))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"statuses": ["done"]}, "statuses values must be one of pending, failed, completed, rejected"),
        ({"statuses": "pending"}, "statuses must be a list"),
        ({"partner_ids": ["x"]}, "partner_ids must hold UUIDs"),
        ({"only_show_disputed": "yes"}, "only_show_disputed must be True, False or None"),
    ],
)
def test_list_settlements_checks_arguments_when_called(
    hook: OESHook, requests_mock: rm.Mocker, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(OESInvalidRequestError, match=named):
        hook.list_settlements(**kwargs)
    assert requests_mock.call_count == 0


def test_an_invalid_listed_record_raises_naming_it(hook: OESHook, requests_mock: rm.Mocker) -> None:
    records = _listed(2)
    del records[1]["transferDirection"]
    requests_mock.get(LIST_URL, json={"settlements": records})
    with pytest.raises(OESResponseError, match=r"record 1 .* of the settlements list"):
        list(hook.list_settlements())


def test_a_server_ignoring_page_number_is_not_paged_forever(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(LIST_URL, json={"settlements": _listed(2)})
    with pytest.raises(OESResponseError, match="only records already listed"):
        list(hook.list_settlements(page_size=2))
    requests_mock.get(LIST_URL, json={"settlements": _listed(3)})
    with pytest.raises(OESResponseError, match="more than the 2 asked for"):
        list(hook.list_settlements(page_size=2))


def test_list_settlement_transfers_filters_and_sort(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(TRANSFERS_URL, json={"settlementTransfers": _transfers(2)})
    transfers = list(
        hook.list_settlement_transfers(
            settlement_statuses=["completed", "rejected"],
            transfer_statuses=["completed"],
            initiated_by=["user a"],
            settlement_updated_on_or_after="2026-11-24T00:00:00+01:00",
            settlement_updated_before="2026-11-25T00:00:00Z",
            sort_field="updatedAt",
            sort_direction="DESC",
        )
    )
    assert [t.quantity for t in transfers] == ["-250000000", "-250000000"]
    query = _query(last_request(requests_mock))
    assert query["settlementStatuses"] == ["completed", "rejected"]
    assert query["settlementTransferStatuses"] == ["completed"]
    assert query["initiatedBy"] == ["user a"]
    assert query["settlementUpdatedOnOrAfter"] == ["2026-11-23T23:00:00.000Z"]
    assert query["settlementUpdatedBefore"] == ["2026-11-25T00:00:00.000Z"]
    assert (query["sortField"], query["sortDirection"]) == (["updatedAt"], ["DESC"])


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sort_field": "createdAt"}, "sort_field values must be one of updatedAt"),
        ({"settlement_updated_on_or_after": "2026-11-24T00:00:00"}, "must carry a time zone"),
        (
            {
                "settlement_updated_on_or_after": "2026-11-25T00:00:00Z",
                "settlement_updated_before": "2026-11-24T00:00Z",
            },
            "must not be later than",
        ),
        ({"transfer_statuses": ["settled"]}, "transfer_statuses values must be one of"),
        ({"initiated_by": [""]}, "initiated_by must hold non-empty printable strings"),
    ],
)
def test_list_settlement_transfers_checks_arguments(
    hook: OESHook, requests_mock: rm.Mocker, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(OESInvalidRequestError, match=named):
        hook.list_settlement_transfers(**kwargs)
    assert requests_mock.call_count == 0


def test_list_settlement_disputes_closed_tri_state(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DISPUTES_URL, json={"disputes": [dispute_record(), assigned_dispute_record(id=PARTNER_ID)]})
    disputes = list(hook.list_settlement_disputes(settlement_ids=[SETTLEMENT_ID], closed=False))
    assert [d.is_open for d in disputes] == [True, False]
    query = _query(last_request(requests_mock))
    assert query["closed"] == ["false"]
    assert query["settlementIds"] == [SETTLEMENT_ID]
    list(hook.list_settlement_disputes())
    assert "closed" not in _query(last_request(requests_mock))


def test_partners_and_get_partner(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(PARTNERS_URL, json={"partners": [partner_record(window=None, top_up=None)]})
    partner = hook.get_partner(PARTNER_ID)
    assert not partner.has_disputes
    query = _query(last_request(requests_mock))
    assert query["ids"] == [PARTNER_ID]
    assert query["pageSize"] == ["1"]
    requests_mock.get(PARTNERS_URL, json={"partners": []})
    with pytest.raises(OESNotFoundError, match=f"partner '{PARTNER_ID}' is not among"):
        hook.get_partner(PARTNER_ID)
    requests_mock.get(PARTNERS_URL, json={"partners": [partner_record(id="11111111-1111-4111-8111-111111111111")]})
    with pytest.raises(OESResponseError, match="answered with partner"):
        hook.get_partner(PARTNER_ID)
    requests_mock.get(PARTNERS_URL, json={"partners": [partner_record(), partner_record(id=SETTLEMENT_ID)]})
    assert [p.has_disputes for p in hook.list_partners(active=True, names=["Example Exchange"])] == [True, True]
    assert _query(last_request(requests_mock))["active"] == ["true"]


# --- hostile bodies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[" * 100_000, "nested too deeply|not JSON"),
        ("<html>oops</html>", "is not JSON"),
        ('{"settlement": ' + "1" * 5000 + "}", "is not JSON"),
        (
            '{"settlement": {}, "settlementTransfers": [], "settlingDisputes": [], "settlementDisputes": []}',
            "not valid",
        ),
        ('{"settlementTransfers": "x", "settlement": {}}', "not valid"),
    ],
)
def test_hostile_bodies_are_refused_with_a_clear_error(
    hook: OESHook, requests_mock: rm.Mocker, text: str, named: str
) -> None:
    requests_mock.get(DETAIL_URL, text=text)
    with pytest.raises(OESResponseError, match=named) as caught:
        hook.get_settlement(SETTLEMENT_ID)
    assert f"settlement '{SETTLEMENT_ID}'" in str(caught.value)


@pytest.mark.parametrize("usd_value", ["NaN", "Infinity", "-1", "1e400", "1" * 5000])
def test_a_hostile_json_number_for_usd_value_is_refused(
    hook: OESHook, requests_mock: rm.Mocker, usd_value: str
) -> None:
    body = json.dumps(details_body("completed", transfers=[transfer_record(usdValue="__V__")]))
    requests_mock.get(DETAIL_URL, text=body.replace('"__V__"', usd_value))
    with pytest.raises(OESResponseError):
        hook.get_settlement(SETTLEMENT_ID)


def test_an_oversized_answer_is_refused_before_it_is_read(hook: OESHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DETAIL_URL, text="{}", headers={"Content-Length": str(64 << 20)})
    with pytest.raises(OESResponseError, match="over the"):
        hook.get_settlement(SETTLEMENT_ID)


def test_numbers_with_a_fraction_in_unknown_fields_stay_exact_as_strings(
    hook: OESHook, requests_mock: rm.Mocker
) -> None:
    body = json.dumps(details_body("completed")).replace('"reconciled": false', '"reconciled": false, "feeRate": 0.1')
    requests_mock.get(DETAIL_URL, text=body)
    assert hook.get_settlement(SETTLEMENT_ID).to_json_dict()["settlement"]["feeRate"] == "0.1"

"""
The simulated settlement read routes of BitGo's client API (``shared/spec/settlements.md``):

* :func:`list_settlements`: ``GET .../clients/settlements`` -> ``{"settlements": [...]}`` (with ``transferDirection``)
* :func:`get_settlement`: ``GET .../clients/settlements/{settlementId}`` -> ``{"settlement", "settlementTransfers",
  "settlingDisputes", "settlementDisputes"}`` (``currencies``, and paging of the transfers)
* :func:`list_settlement_transfers`: ``GET .../clients/settlementTransfers`` -> ``{"settlementTransfers": [...]}``
* :func:`list_settlement_disputes`: ``GET .../clients/settlement/disputes`` -> ``{"disputes": [...]}``
* :func:`list_partners`: ``GET .../partners`` -> ``{"partners": [...]}``

Checks in the allocation routes' order (auth, validation, membership, license, lookup), with their helpers.
Array parameters are repeated keys (``statuses=pending&statuses=failed``); a comma list is not split, so it
fails validation like any bad value. Every 400 of these routes has an empty JSON object as its body (the
spec's 400 schema); other errors are BitGo's ``{"error", "name", "requestId"}``. Paging: ``pageNumber`` from 0,
``pageSize`` 1 to 1000 (default 100); no paging metadata. The settlements list has no sort: it is in
``createdAt``, ``id`` order. Transfers sort on ``sortField=updatedAt`` by the transfer's own ``updatedAt`` (which
follows its settlement's), then ``createdAt`` and ``id`` ascending.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from airflow_provider_oes.testing.simulator._common import (
    API_PREFIX,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    error_response,
    is_uuid,
    parse_iso,
    to_ms,
)
from airflow_provider_oes.testing.simulator.api_routes import (
    check_auth,
    check_enterprise,
    check_enterprise_header,
    request_state,
    take_record_fault,
)
from airflow_provider_oes.testing.simulator.faults import apply_settlement_fault
from airflow_provider_oes.testing.simulator.settlement_state import SETTLEMENT_STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from starlette.requests import Request
    from starlette.responses import Response

    from airflow_provider_oes.testing.simulator.faults import Fault
    from airflow_provider_oes.testing.simulator.settlement_state import Settlement, Transfer
    from airflow_provider_oes.testing.simulator.state import State

_ENTERPRISE = API_PREFIX + "/{enterprise_id}"
SETTLEMENTS_PATH = _ENTERPRISE + "/clients/settlements"
SETTLEMENT_PATH = SETTLEMENTS_PATH + "/{settlement_id}"
TRANSFERS_PATH = _ENTERPRISE + "/clients/settlementTransfers"
DISPUTES_PATH = _ENTERPRISE + "/clients/settlement/disputes"
PARTNERS_PATH = _ENTERPRISE + "/partners"

TRANSFER_STATUSES = (
    "pending",
    "pending_onchain",
    "onchain_initiated",
    "onchain_failed",
    "completed",
    "failed",
    "rejected",
    "disputed",
    "pending_settlement_assignment",
)


class _BadQuery(Exception):
    """A query parameter the route refuses: answered 400 with an empty body."""


class _Query:
    """The route's query parameters, each read and checked once (raises :class:`_BadQuery`)."""

    def __init__(self, request: Request) -> None:
        self._params = request.query_params

    def values(self, name: str, check: Callable[[str], bool] = bool) -> list[str] | None:
        values = self._params.getlist(name)
        if not values:
            return None
        if not all(check(value) for value in values):
            raise _BadQuery(name)
        return values

    def uuids(self, name: str) -> set[str] | None:
        values = self.values(name, is_uuid)
        return None if values is None else {value.lower() for value in values}

    def enums(self, name: str, allowed: tuple[str, ...]) -> set[str] | None:
        values = self.values(name, lambda value: value in allowed)
        return None if values is None else set(values)

    def boolean(self, name: str) -> bool | None:
        raw = self._params.get(name)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise _BadQuery(name)
        return raw == "true"

    def time_ms(self, name: str) -> int | None:
        raw = self._params.get(name)
        if raw is None:
            return None
        try:
            return to_ms(parse_iso(raw))
        except ValueError:
            raise _BadQuery(name) from None

    def one_of(self, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        raw = self._params.get(name, default)
        if raw is not None and raw not in allowed:
            raise _BadQuery(name)
        return raw

    def page(self, rows: list[Any]) -> list[Any]:
        try:
            number = int(self._params.get("pageNumber", "0"))
            size = int(self._params.get("pageSize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            raise _BadQuery("paging") from None
        if number < 0 or not 1 <= size <= MAX_PAGE_SIZE:
            raise _BadQuery("paging")
        return rows[number * size : (number + 1) * size]


def _empty_400() -> Response:
    return JSONResponse({}, status_code=400)


def _in(allowed: set[str] | None, value: str | None) -> bool:
    return allowed is None or (value is not None and value.lower() in allowed)


async def _answer(
    request: Request,
    build: Callable[[State, _Query, str, Fault | None], dict[str, Any] | Response],
    ids: list[str] | None = None,
) -> Response:
    """Auth, the enterprise header, the query (400 with an empty body), membership, license; then ``build``.

    :param ids: the ids the request is about, matched by record faults queued for an id.
    """
    state = request_state(request)
    enterprise_id: str = request.path_params["enterprise_id"]
    denied = check_auth(request, state) or check_enterprise_header(request, enterprise_id)
    if denied is not None:
        return denied
    query = _Query(request)
    try:
        # build reads and checks every parameter: a bad one answers 400 before membership, as the API does
        with state.lock:
            state.advance()
            answer = build(state, query, enterprise_id, None)
    except _BadQuery:
        return _empty_400()
    denied = check_enterprise(state, enterprise_id)
    if denied is not None:
        return denied
    fault = take_record_fault(request, state, ids)
    if fault is not None:
        with state.lock:
            answer = build(state, query, enterprise_id, fault)
    return answer if not isinstance(answer, dict) else JSONResponse(answer)


def _faulted(records: Iterable[dict[str, Any]], fault: Fault | None) -> list[dict[str, Any]]:
    return [record if fault is None else apply_settlement_fault(fault.kind, record) for record in records]


def _settlements(state: State, enterprise_id: str) -> list[Settlement]:
    rows = [s for s in state.settlements.settlements.values() if s.enterprise_id == enterprise_id]
    rows.sort(key=lambda s: (s.created_ms, s.id))
    return rows


def _build_settlements(state: State, query: _Query, enterprise_id: str, fault: Fault | None) -> dict[str, Any]:
    ids = query.uuids("settlementIds")
    partners = query.uuids("partnerIds")
    parties = query.uuids("partyConnectionIds")
    counterparties = query.uuids("counterpartyConnectionIds")
    statuses = query.enums("statuses", SETTLEMENT_STATUSES)
    disputed_only = query.boolean("onlyShowDisputed")
    rows = [
        s
        for s in _settlements(state, enterprise_id)
        if _in(ids, s.id)
        and _in(partners, s.partner_id)
        and _in(parties, s.connection_id)
        and _in(counterparties, s.counterparty_connection_id)
        and _in(statuses, s.status)
        and (not disputed_only or s.disputed)
    ]
    return {"settlements": _faulted((s.render(listed=True) for s in query.page(rows)), fault)}


async def list_settlements(request: Request) -> Response:
    """``GET .../clients/settlements``: filtered, in ``createdAt`` order, one page."""
    return await _answer(request, _build_settlements)


def _build_settlement(
    settlement_id: str, state: State, query: _Query, enterprise_id: str, fault: Fault | None
) -> dict[str, Any] | Response:
    currencies = query.values("currencies")
    query.page([])  # the paging parameters are checked even for an unknown settlement
    if not is_uuid(settlement_id):
        raise _BadQuery("settlementId")
    settlement = state.settlements.settlements.get(settlement_id)
    if settlement is None or settlement.enterprise_id != enterprise_id:
        # unknown, or a settlement the calling client is not a party to: the same 404
        return error_response(404, f"Settlement {settlement_id} not found", "NotFoundError")
    transfers = [t for t in settlement.transfers if currencies is None or t.currency in currencies]
    record = settlement.render()
    if fault is not None:
        record = apply_settlement_fault(fault.kind, record)
    disputes = [d.render() for d in state.settlements.disputes.values() if d.settlement_id == settlement_id]
    return {
        "settlement": record,
        "settlementTransfers": [settlement.render_transfer(t) for t in query.page(transfers)],
        "settlingDisputes": [],
        "settlementDisputes": disputes,
    }


async def get_settlement(request: Request) -> Response:
    """``GET .../clients/settlements/{settlementId}``: the settlement, a page of its transfers, its disputes."""
    settlement_id: str = request.path_params["settlement_id"]
    return await _answer(request, functools.partial(_build_settlement, settlement_id), [settlement_id])


def _build_transfers(state: State, query: _Query, enterprise_id: str, fault: Fault | None) -> dict[str, Any]:
    currencies = query.values("currencies")
    initiated_by = query.values("initiatedBy")
    partners = query.uuids("partnerIds")
    ids = query.uuids("settlementIds")
    statuses = query.enums("settlementStatuses", SETTLEMENT_STATUSES)
    transfer_statuses = query.enums("settlementTransferStatuses", TRANSFER_STATUSES)
    before = query.time_ms("settlementUpdatedBefore")
    after = query.time_ms("settlementUpdatedOnOrAfter")
    sort_field = query.one_of("sortField", ("updatedAt",), None)
    direction = query.one_of("sortDirection", ("ASC", "DESC"), "ASC")
    rows: list[tuple[Settlement, Transfer, dict[str, Any]]] = []
    for s in _settlements(state, enterprise_id):
        if not (_in(ids, s.id) and _in(partners, s.partner_id) and _in(statuses, s.status)):
            continue
        if initiated_by is not None and s.initiated_by not in initiated_by:
            continue
        if (before is not None and s.updated_ms >= before) or (after is not None and s.updated_ms < after):
            continue
        for t in s.transfers:
            record = s.render_transfer(t)
            if (currencies is None or t.currency in currencies) and _in(transfer_statuses, record["status"]):
                rows.append((s, t, record))
    rows.sort(key=lambda row: (row[1].created_ms, row[1].id))
    if sort_field is not None:
        # stable: rows of equal updatedAt keep createdAt, id ascending whatever the direction
        rows.sort(key=lambda row: row[0].transfer_updated_ms(row[1]), reverse=direction == "DESC")
    return {"settlementTransfers": _faulted((record for _, _, record in query.page(rows)), fault)}


async def list_settlement_transfers(request: Request) -> Response:
    """``GET .../clients/settlementTransfers``: filtered, optionally by ``updatedAt``, one page."""
    return await _answer(request, _build_transfers)


def _build_disputes(state: State, query: _Query, enterprise_id: str, fault: Fault | None) -> dict[str, Any]:
    ids = query.uuids("settlementIds")
    settled_in = query.uuids("settledInSettlementIds")
    connections = query.uuids("connectionIds")
    partners = query.uuids("partnerIds")
    dispute_ids = query.uuids("disputeIds")
    closure_ids = query.uuids("disputeClosureIds")
    closed = query.boolean("closed")
    book = state.settlements
    rows = []
    for dispute in sorted(book.disputes.values(), key=lambda d: (d.created_ms, d.id)):
        settlement = book.settlements.get(dispute.settlement_id)
        if settlement is None or settlement.enterprise_id != enterprise_id:
            continue
        # the simulator never closes a dispute: none is settled in a later settlement nor has a closure
        if settled_in is not None or closure_ids is not None or closed is True:
            continue
        if (
            _in(ids, dispute.settlement_id)
            and _in(connections, dispute.connection_id)
            and _in(partners, settlement.partner_id)
            and _in(dispute_ids, dispute.id)
        ):
            rows.append(dispute)
    return {"disputes": _faulted((d.render() for d in query.page(rows)), fault)}


async def list_settlement_disputes(request: Request) -> Response:
    """``GET .../clients/settlement/disputes``: the disputes of the client's settlements, one page."""
    return await _answer(request, _build_disputes)


def _build_partners(state: State, query: _Query, enterprise_id: str, fault: Fault | None) -> dict[str, Any]:
    ids = query.uuids("ids")
    names = query.values("names")
    institution_ids = query.uuids("institutionIds")
    identifiers = query.values("institutionIdentifiers")
    active = query.boolean("active")
    query.boolean("filterByTrustOrg")  # accepted; every simulated partner is in the same trust
    query.boolean("allocationPoliciesEnabled")
    rows = []
    for partner in sorted(state.settlements.partners.values(), key=lambda p: p.id):
        record = partner.render()
        if (
            _in(ids, partner.id)
            and (names is None or partner.name in names)
            and _in(institution_ids, partner.institution_id)
            and (identifiers is None or record["institutionIdentifier"] in identifiers)
            and (active is None or partner.active is active)
        ):
            rows.append(record)
    return {"partners": _faulted(query.page(rows), fault)}


async def list_partners(request: Request) -> Response:
    """``GET .../partners``: the partners, with their dispute and top-up windows, one page."""
    return await _answer(request, _build_partners)


def settlement_routes() -> list[tuple[str, Callable[[Request], Any], str]]:
    """(path, endpoint, method) of every settlement route."""
    return [
        (SETTLEMENTS_PATH, list_settlements, "GET"),
        (SETTLEMENT_PATH, get_settlement, "GET"),
        (TRANSFERS_PATH, list_settlement_transfers, "GET"),
        (DISPUTES_PATH, list_settlement_disputes, "GET"),
        (PARTNERS_PATH, list_partners, "GET"),
    ]

"""
The simulated OES API: one function per endpoint of BitGo's spec (``shared/spec/oes-allocations.openapi.yaml``).

* :func:`get_allocation`: ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations/{allocationId}``
  (operation ``v1ClientAllocationGetRoute``) -> ``{"allocation": {...}}``
* :func:`list_allocations`: ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations``
  (operation ``v1ClientAllocationsGetRoute``) -> ``{"allocations": [...]}``

Order of checks, as the API does: auth (401), request validation (400), enterprise membership (401),
OES license (403), allocation lookup (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from airflow_provider_oes.testing.simulator._common import (
    API_PREFIX,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    SORT_DIRECTIONS,
    SORT_FIELDS,
    STATUSES,
    TYPES,
    UNLICENSED_ENTERPRISE_ID,
    _csv,
    _error,
    _is_uuid,
    _parse_iso,
)
from airflow_provider_oes.testing.simulator.faults import _apply_record_fault
from airflow_provider_oes.testing.simulator.gateway import _FAULT_SCOPE_KEY

if TYPE_CHECKING:
    from datetime import datetime

    from starlette.requests import Request
    from starlette.responses import Response

    from airflow_provider_oes.testing.simulator.faults import _Fault
    from airflow_provider_oes.testing.simulator.state import _Allocation, _Snapshot, _State

SINGLE_PATH = API_PREFIX + "/{enterprise_id}/clients/allocations/{allocation_id}"
LIST_PATH = API_PREFIX + "/{enterprise_id}/clients/allocations"


def _state(request: Request) -> _State:
    state: _State = request.app.state.oes_state
    return state


def _check_auth(request: Request, state: _State) -> Response | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.strip() != state.token:
        return _error(401, "Missing or invalid access token", "AuthenticationError")
    return None


def _check_enterprise(state: _State, enterprise_id: str) -> Response | None:
    with state.lock:
        member = enterprise_id in state.members
    if not member:
        return _error(401, "Caller is not a member of the enterprise", "AuthenticationError")
    if enterprise_id == UNLICENSED_ENTERPRISE_ID:
        return _error(403, "Enterprise does not have OES license", "PermissionDeniedError")
    return None


def _take_record_fault(request: Request, state: _State, ids: list[str] | None) -> _Fault | None:
    if _FAULT_SCOPE_KEY in request.scope:  # one fault per request: it already took a transport fault
        return None
    return state.faults.take(ids, record_kind=True)


def _serve(alloc: _Allocation, snapshot: _Snapshot, fault: _Fault | None) -> dict[str, Any]:
    """Render one record; a genuine answer counts as a read, a faulted one does not (caller holds the lock)."""
    if fault is not None:
        return _apply_record_fault(fault.kind, alloc.render(snapshot))
    alloc.reads += 1
    return alloc.render(snapshot)


async def get_allocation(request: Request) -> Response:
    """``GET .../clients/allocations/{allocationId}``: one allocation or deallocation."""
    state = _state(request)
    enterprise_id: str = request.path_params["enterprise_id"]
    allocation_id: str = request.path_params["allocation_id"]
    denied = _check_auth(request, state)
    if denied is not None:
        return denied
    if not _is_uuid(allocation_id):
        return _error(400, "Invalid UUID format for allocationId", "InvalidRequestError")
    denied = _check_enterprise(state, enterprise_id)
    if denied is not None:
        return denied
    with state.lock:
        alloc = state.allocations.get(allocation_id)
        if alloc is None or alloc.enterprise_id != enterprise_id:
            return _error(404, f"Allocation {allocation_id} not found", "NotFoundError")
    fault = _take_record_fault(request, state, [allocation_id])
    with state.lock:
        record = _serve(alloc, alloc.observe(), fault)
    return JSONResponse({"allocation": record})


@dataclass
class _ListQuery:
    """The list endpoint's query parameters, validated."""

    allocation_ids: list[str] | None
    statuses: list[str] | None
    types: list[str] | None
    currencies: list[str] | None
    connection_ids: list[str] | None
    created_on_or_after: datetime | None
    created_before: datetime | None
    page_number: int
    page_size: int
    sort_field: str | None
    sort_direction: str


def _parse_list_query(request: Request) -> _ListQuery | Response:
    """Validate the list endpoint's query; a 400 answer names what is wrong."""
    params = request.query_params
    ids = _csv(params.get("allocationIds"))
    if ids is not None and not all(_is_uuid(i) for i in ids):
        return _error(400, "Invalid UUID format for allocationIds", "InvalidRequestError")
    enums: dict[str, list[str] | None] = {}
    for name, allowed in (("statuses", STATUSES), ("types", TYPES)):
        values = _csv(params.get(name))
        if values is not None and any(v not in allowed for v in values):
            return _error(400, f"Invalid value in {name}: allowed {', '.join(allowed)}", "InvalidRequestError")
        enums[name] = values
    bounds: dict[str, datetime | None] = {}
    for name in ("createdOnOrAfter", "createdBefore"):
        raw = params.get(name)
        try:
            bounds[name] = _parse_iso(raw) if raw is not None else None
        except ValueError:
            return _error(400, f"Invalid date format for {name}", "InvalidRequestError")
    try:
        page_number = int(params.get("pageNumber", "0"))
        page_size = int(params.get("pageSize", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        return _error(400, "Invalid pagination parameters", "InvalidRequestError")
    if page_number < 0 or not 1 <= page_size <= MAX_PAGE_SIZE:
        return _error(400, "Invalid pagination parameters", "InvalidRequestError")
    sort_field = params.get("sortField")
    direction = params.get("sortDirection", "ASC")
    if (sort_field is not None and sort_field not in SORT_FIELDS) or direction not in SORT_DIRECTIONS:
        return _error(400, "Invalid sort parameters", "InvalidRequestError")
    return _ListQuery(
        allocation_ids=ids,
        statuses=enums["statuses"],
        types=enums["types"],
        currencies=_csv(params.get("currencies")),
        connection_ids=_csv(params.get("connectionIds")),
        created_on_or_after=bounds["createdOnOrAfter"],
        created_before=bounds["createdBefore"],
        page_number=page_number,
        page_size=page_size,
        sort_field=sort_field,
        sort_direction=direction,
    )


def _matches(query: _ListQuery, alloc: _Allocation, enterprise_id: str) -> bool:
    """Every filter but ``statuses`` (which needs the observed status)."""
    if alloc.enterprise_id != enterprise_id:
        return False
    if query.allocation_ids is not None and alloc.id not in query.allocation_ids:
        return False
    if query.types is not None and alloc.type not in query.types:
        return False
    if query.currencies is not None and alloc.currency not in query.currencies:
        return False
    if query.connection_ids is not None and alloc.connection_id not in query.connection_ids:
        return False
    after, before = query.created_on_or_after, query.created_before
    return not ((after is not None and alloc.created_at < after) or (before is not None and alloc.created_at >= before))


def _sort_key(sort_field: str, row: tuple[_Allocation, _Snapshot]) -> Any:
    alloc, snapshot = row
    if sort_field == "id":
        return alloc.id
    if sort_field == "updatedAt":
        return snapshot[2]
    if sort_field == "currency":
        return alloc.currency
    try:
        return (0, int(alloc.quantity), "")
    except ValueError:
        return (1, 0, alloc.quantity)


async def list_allocations(request: Request) -> Response:
    """``GET .../clients/allocations``: filtered, sorted, one page (``pageNumber`` from 0)."""
    state = _state(request)
    enterprise_id: str = request.path_params["enterprise_id"]
    denied = _check_auth(request, state)
    if denied is not None:
        return denied
    query = _parse_list_query(request)
    if not isinstance(query, _ListQuery):
        return query
    denied = _check_enterprise(state, enterprise_id)
    if denied is not None:
        return denied
    fault = _take_record_fault(request, state, query.allocation_ids)
    with state.lock:
        rows: list[tuple[_Allocation, _Snapshot]] = []
        for alloc in state.allocations.values():
            if not _matches(query, alloc, enterprise_id):
                continue
            snapshot = alloc.observe()
            if query.statuses is not None and snapshot[0] not in query.statuses:
                continue
            rows.append((alloc, snapshot))
        rows.sort(key=lambda row: (row[0].created_at, row[0].id))
        if query.sort_field is not None:
            field = query.sort_field
            rows.sort(key=lambda row: _sort_key(field, row), reverse=query.sort_direction == "DESC")
        start = query.page_number * query.page_size
        records = [_serve(alloc, snapshot, fault) for alloc, snapshot in rows[start : start + query.page_size]]
    return JSONResponse({"allocations": records})

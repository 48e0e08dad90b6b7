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

from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from airflow_provider_oes.testing.simulator._common import (
    API_PREFIX,
    DEFAULT_PAGE_SIZE,
    ENTERPRISE_HEADER,
    MAX_PAGE_SIZE,
    SORT_DIRECTIONS,
    SORT_FIELDS,
    STATUSES,
    TYPES,
    UNLICENSED_ENTERPRISE_ID,
    bearer_token,
    csv_values,
    error_response,
    is_uuid,
    parse_iso,
    to_us,
)
from airflow_provider_oes.testing.simulator.faults import apply_record_fault
from airflow_provider_oes.testing.simulator.gateway import FAULT_SCOPE_KEY
from airflow_provider_oes.testing.simulator.queries import ListQuery, run_list_query

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from airflow_provider_oes.testing.simulator.faults import Fault
    from airflow_provider_oes.testing.simulator.state import Allocation, State

SINGLE_PATH = API_PREFIX + "/{enterprise_id}/clients/allocations/{allocation_id}"
LIST_PATH = API_PREFIX + "/{enterprise_id}/clients/allocations"


def request_state(request: Request) -> State:
    state: State = request.app.state.oes_state
    return state


def check_auth(request: Request, state: State) -> Response | None:
    token = bearer_token(request.headers.get("authorization", ""))
    with state.lock:
        valid = token in state.tokens
    if not valid:
        return error_response(401, "Missing or invalid access token", "AuthenticationError")
    return None


def check_enterprise_header(request: Request, enterprise_id: str) -> Response | None:
    """BitGo's SDK also names the enterprise in a header: a gateway refuses a header that disagrees."""
    header = request.headers.get(ENTERPRISE_HEADER)
    if header is not None and header != enterprise_id:
        message = f"{ENTERPRISE_HEADER} header {header!r} does not match the enterprise {enterprise_id!r} in the path"
        return error_response(400, message, "InvalidRequestError")
    return None


def check_enterprise(state: State, enterprise_id: str) -> Response | None:
    with state.lock:
        member = enterprise_id in state.members
    if not member:
        return error_response(401, "Caller is not a member of the enterprise", "AuthenticationError")
    if enterprise_id == UNLICENSED_ENTERPRISE_ID:
        return error_response(403, "Enterprise does not have OES license", "PermissionDeniedError")
    return None


def take_record_fault(request: Request, state: State, ids: list[str] | None) -> Fault | None:
    if FAULT_SCOPE_KEY in request.scope:  # one fault per request: it already took a transport fault
        return None
    return state.faults.take(ids, record_kind=True)


def _serve(state: State, alloc: Allocation, fault: Fault | None) -> dict[str, Any]:
    """Render one record; a genuine answer counts as a read, a faulted one does not (caller holds the lock)."""
    if fault is not None:
        return apply_record_fault(fault.kind, alloc.render())
    return state.serve(alloc)


async def get_allocation(request: Request) -> Response:
    """``GET .../clients/allocations/{allocationId}``: one allocation or deallocation."""
    state = request_state(request)
    enterprise_id: str = request.path_params["enterprise_id"]
    allocation_id: str = request.path_params["allocation_id"]
    denied = check_auth(request, state) or check_enterprise_header(request, enterprise_id)
    if denied is not None:
        return denied
    if not is_uuid(allocation_id):
        return error_response(400, "Invalid UUID format for allocationId", "InvalidRequestError")
    denied = check_enterprise(state, enterprise_id)
    if denied is not None:
        return denied
    with state.lock:
        alloc = state.allocations.get(allocation_id)
        if alloc is None or alloc.enterprise_id != enterprise_id:
            return error_response(404, f"Allocation {allocation_id} not found", "NotFoundError")
    fault = take_record_fault(request, state, [allocation_id])
    with state.lock:
        state.advance()
        record = _serve(state, alloc, fault)
    return JSONResponse({"allocation": record})


def _parse_list_query(request: Request) -> ListQuery | Response:
    """Validate the list endpoint's query; a 400 answer names what is wrong."""
    params = request.query_params
    ids = csv_values(params.get("allocationIds"))
    if ids is not None and not all(is_uuid(i) for i in ids):
        return error_response(400, "Invalid UUID format for allocationIds", "InvalidRequestError")
    enums: dict[str, list[str] | None] = {}
    for name, allowed in (("statuses", STATUSES), ("types", TYPES)):
        values = csv_values(params.get(name))
        if values is not None and any(v not in allowed for v in values):
            return error_response(400, f"Invalid value in {name}: allowed {', '.join(allowed)}", "InvalidRequestError")
        enums[name] = values
    bounds: dict[str, int | None] = {}
    for name in ("createdOnOrAfter", "createdBefore"):
        raw = params.get(name)
        try:
            bounds[name] = to_us(parse_iso(raw)) if raw is not None else None
        except ValueError:
            return error_response(400, f"Invalid date format for {name}: {raw!r}", "InvalidRequestError")
    try:
        page_number = int(params.get("pageNumber", "0"))
        page_size = int(params.get("pageSize", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        return error_response(400, "Invalid pagination parameters", "InvalidRequestError")
    if page_number < 0 or not 1 <= page_size <= MAX_PAGE_SIZE:
        return error_response(400, "Invalid pagination parameters", "InvalidRequestError")
    sort_field = params.get("sortField")
    direction = params.get("sortDirection", "ASC")
    if sort_field is not None and sort_field not in SORT_FIELDS:
        return error_response(
            400, f"Invalid sortField {sort_field!r}: allowed {', '.join(SORT_FIELDS)}", "InvalidRequestError"
        )
    if direction not in SORT_DIRECTIONS:
        return error_response(400, f"Invalid sortDirection {direction!r}: allowed ASC, DESC", "InvalidRequestError")
    return ListQuery(
        allocation_ids=ids,
        statuses=enums["statuses"],
        types=enums["types"],
        currencies=csv_values(params.get("currencies")),
        connection_ids=csv_values(params.get("connectionIds")),
        partner_ids=csv_values(params.get("partnerIds")),
        created_on_or_after_us=bounds["createdOnOrAfter"],
        created_before_us=bounds["createdBefore"],
        page_number=page_number,
        page_size=page_size,
        sort_field=sort_field,
        sort_direction=direction,
    )


def _rejected(state: State, query: ListQuery | None) -> Response | None:
    """The list endpoint refused as configured (:meth:`OESSimulator.reject_list` / ``reject_feed``)."""
    with state.lock:
        rejection = state.list_rejection
    if rejection is None:
        return None
    status, feed_only = rejection
    if feed_only and (query is None or query.sort_field != "updatedAt"):
        return None
    if status == 404:
        return error_response(404, "Not Found", "NotFoundError")
    if status == 400:
        return error_response(
            400, "Invalid sort parameters: sortField updatedAt is not supported", "InvalidRequestError"
        )
    return error_response(status, f"The list endpoint is unavailable (HTTP {status})", "InvalidRequestError")


async def list_allocations(request: Request) -> Response:
    """``GET .../clients/allocations``: filtered, sorted, one page (``pageNumber`` from 0)."""
    state = request_state(request)
    enterprise_id: str = request.path_params["enterprise_id"]
    denied = _rejected(state, None) or check_auth(request, state) or check_enterprise_header(request, enterprise_id)
    if denied is not None:
        return denied
    query = _parse_list_query(request)
    if not isinstance(query, ListQuery):
        return query
    denied = _rejected(state, query) or check_enterprise(state, enterprise_id)
    if denied is not None:
        return denied
    fault = take_record_fault(request, state, query.allocation_ids)
    with state.lock:
        state.advance()
        page = run_list_query(state, enterprise_id, query)
        records = [_serve(state, alloc, fault) for alloc in page]
    return JSONResponse({"allocations": records})

"""
A local simulator of BitGo's Off-Exchange Settlement (OES) client-allocation API.

It is a real HTTP server (a FastAPI app served by uvicorn, bound to ``127.0.0.1`` only) that answers

* ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations/{allocationId}`` and
* ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations`` (the list),

with the response and error shapes of the public API, so that demos, the provider's tests and users'
own DAG tests run offline. Allocations follow a scripted timeline (reserved for N seconds or N reads,
then cleared/released), and faults (HTTP 5xx/429, slow answers, dropped connections, malformed
bodies) can be queued.

Three ways to run it:

* in-process: ``with OESSimulator() as sim: ...`` (uvicorn in a background thread);
* from the shell: ``python -m airflow_provider_oes.testing.simulator --port 8080 --seed-demo``;
* in a child process from Python: ``with OESSimulatorProcess() as proc: proc.client.add_allocation()``.

A JSON control API under ``/_sim/`` (no auth, not counted in ``request_count``) drives a simulator
that lives in another process; :class:`OESSimulatorClient` wraps it:

* ``GET /_sim/health`` -> ``{"status": "ok", "url", "token", "enterpriseId"}``
* ``POST /_sim/allocations`` (body: ``add_allocation`` kwargs) -> ``{"id": ...}``
* ``GET /_sim/allocations/{id}`` -> the current record (no read counted)
* ``POST /_sim/allocations/{id}/status`` (``{"status", "reason"}``) -> the record
* ``POST /_sim/faults`` (``inject_fault`` kwargs) / ``DELETE /_sim/faults``
* ``GET /_sim/stats`` -> ``{"request_count": n, "requests": [[method, path, query, t], ...]}``
* ``POST /_sim/reset_counts``, ``POST /_sim/reset``

Bad control input answers 400 ``{"error": ...}``; an unknown allocation answers 404.

Semantics worth knowing:

* Auth is checked first (401), then request validation (400), then enterprise membership (401),
  then the OES license (403), then the allocation lookup (404).
* A "read" (for ``reserved_for_reads``) is counted each time the genuine record is served, by the
  single GET or as an item of a list page. Responses replaced by a fault do not count as reads,
  except ``slow``, which answers normally.
* List paging: ``pageNumber`` from 0 (default 0), ``pageSize`` from 1 to 1000 (default 100); anything
  else is a 400. Results are sorted by ``createdAt`` then ``id`` (after ``sortField``, if given).
  ``partnerIds`` is accepted and ignored (records carry no partner id).
* Faults form a FIFO queue. Each API request takes at most one fault: the first queued fault that
  matches it (``allocation_id=None`` matches every request; an id matches the single GET of that id
  and list requests whose ``allocationIds`` contain it). Transport faults (``500``, ``502``,
  ``503``, ``429``, ``slow``, ``drop``, ``non_json``) are taken before auth and validation; record
  faults (``missing_fields``, ``wrong_types``, ``unknown_status``, ``wrong_id``) are taken only by a
  request that would otherwise answer 200, and in a list apply to every item.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from types import FrameType, TracebackType

    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "DEFAULT_CONNECTION_ID",
    "DEFAULT_ENTERPRISE_ID",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TOKEN",
    "FAULT_KINDS",
    "MAX_PAGE_SIZE",
    "UNLICENSED_ENTERPRISE_ID",
    "OESSimulator",
    "OESSimulatorClient",
    "OESSimulatorProcess",
]

log = logging.getLogger(__name__)

#: An enterprise the simulated caller is a member of, but which has no OES license (answers 403).
UNLICENSED_ENTERPRISE_ID = "unlicensed-enterprise"
DEFAULT_TOKEN = "sim-token"
DEFAULT_ENTERPRISE_ID = "sim-enterprise"
#: connectionId given to allocations added without one.
DEFAULT_CONNECTION_ID = "6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f"
DEFAULT_INITIATED_BY = "sim-user"
DEFAULT_RESERVED_REASON = "awaiting partner confirmation"
DEFAULT_RELEASED_REASON = "insufficient balance"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

API_PREFIX = "/api/network/v1/enterprises"
STATUSES = ("cleared", "released", "reserved")
TYPES = ("allocation", "deallocation")
SORT_FIELDS = ("id", "updatedAt", "quantity", "currency")
TRANSPORT_FAULTS = ("500", "502", "503", "429", "slow", "drop", "non_json")
RECORD_FAULTS = ("missing_fields", "wrong_types", "unknown_status", "wrong_id")
#: Every fault kind accepted by :meth:`OESSimulator.inject_fault`.
FAULT_KINDS = TRANSPORT_FAULTS + RECORD_FAULTS

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SINGLE_RE = re.compile(r"^/api/network/v1/enterprises/[^/]+/clients/allocations/([^/]+)/?$")
_FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "500": (500, "Internal server error (simulated fault)", "InternalServerError"),
    "502": (502, "Bad gateway (simulated fault)", "BadGatewayError"),
    "503": (503, "Service unavailable (simulated fault)", "ServiceUnavailableError"),
    "429": (429, "Too many requests (simulated fault)", "RateLimitExceededError"),
}
_FAULT_SCOPE_KEY = "oes_simulator.fault_taken"
_DROP_LOG_MESSAGE = "ASGI callable returned without completing response."


def _is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    """
    Format a datetime like the API does: UTC, millisecond precision, ``Z`` suffix.

    :param moment: an aware datetime.
    """
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse_iso(value: str) -> datetime:
    """
    Parse an ISO 8601 date-time (``Z`` accepted, naive means UTC).

    :param value: the text to parse.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _error_body(message: str, name: str) -> dict[str, str]:
    return {"error": message, "name": name, "requestId": str(uuid.uuid4())}


def _error(status: int, message: str, name: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_error_body(message, name), status_code=status, headers=headers)


class _DropLogFilter(logging.Filter):
    """Silence uvicorn's error line for the deliberately incomplete ``drop`` responses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROP_LOG_MESSAGE


_DROP_FILTER = _DropLogFilter()


@dataclass
class _Fault:
    kind: str
    count: int
    allocation_id: str | None
    retry_after: float | str | None
    delay: float | None

    def matches(self, ids: list[str] | None) -> bool:
        if self.allocation_id is None:
            return True
        return ids is not None and self.allocation_id in ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "allocation_id": self.allocation_id,
            "retry_after": self.retry_after,
            "delay": self.delay,
        }


@dataclass
class _Allocation:
    id: str
    enterprise_id: str
    final_status: str
    reserved_for_seconds: float | None
    reserved_for_reads: int | None
    reserved_reason: str
    final_reason: str | None
    currency: str
    quantity: str
    type: str
    client_external_id: str
    connection_id: str
    initiated_by: str
    partner_external_id: str | None
    notes: str | None
    retriable: bool
    extra_fields: dict[str, Any]
    created_at: datetime
    created_mono: float
    reads: int = 0
    flipped_at: datetime | None = None
    override: tuple[str, str | None, datetime] | None = field(default=None)

    def _final_reason(self) -> str | None:
        if self.final_status == "cleared":
            return None
        if self.final_status == "reserved":
            return self.final_reason or self.reserved_reason
        return self.final_reason or DEFAULT_RELEASED_REASON

    def observe(self) -> tuple[str, str | None, datetime]:
        """Return (status, reason, updatedAt) as a read made now would see them (no read counted)."""
        if self.override is not None:
            return self.override
        if self.final_status == "reserved":
            return "reserved", self._final_reason(), self.created_at
        if self.flipped_at is None:
            seconds, reads = self.reserved_for_seconds, self.reserved_for_reads
            if seconds is not None and time.monotonic() - self.created_mono < seconds:
                return "reserved", self.reserved_reason, self.created_at
            if reads is not None and self.reads < reads:
                return "reserved", self.reserved_reason, self.created_at
            if seconds is None and reads is None:
                self.flipped_at = self.created_at
            elif reads is None and seconds is not None:
                self.flipped_at = self.created_at + timedelta(seconds=seconds)
            else:
                self.flipped_at = max(_now(), self.created_at + timedelta(seconds=seconds or 0))
        return self.final_status, self._final_reason(), self.flipped_at

    def render(self, snapshot: tuple[str, str | None, datetime] | None = None) -> dict[str, Any]:
        """
        Build the API JSON record.

        :param snapshot: (status, reason, updatedAt); observed now when omitted.
        """
        status, reason, updated = snapshot if snapshot is not None else self.observe()
        record: dict[str, Any] = {
            "id": self.id,
            "amount": {"currency": self.currency, "quantity": self.quantity},
            "connectionId": self.connection_id,
            "clientExternalId": self.client_external_id,
        }
        if self.partner_external_id is not None:
            record["partnerExternalId"] = self.partner_external_id
        record["initiatedBy"] = self.initiated_by
        if self.notes is not None:
            record["notes"] = self.notes
        record.update(
            {
                "createdAt": _iso(self.created_at),
                "updatedAt": _iso(updated),
                "retriable": self.retriable,
                "reason": reason,
                "status": status,
                "type": self.type,
            }
        )
        record.update(copy.deepcopy(self.extra_fields))
        return record


def _apply_record_fault(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    if kind == "missing_fields":
        record.pop("status", None)
        record.pop("amount", None)
    elif kind == "wrong_types":
        record["retriable"] = "yes"
        record["amount"] = {**record.get("amount", {}), "quantity": 12.5}
    elif kind == "unknown_status":
        record["status"] = "pending_review"
    elif kind == "wrong_id":
        other = str(uuid.uuid4())
        while other == record["id"]:  # pragma: no cover - astronomically unlikely
            other = str(uuid.uuid4())
        record.update({"id": other, "status": "cleared", "reason": None})
    return record


class _State:
    """All mutable simulator state, guarded by one lock."""

    def __init__(self, token: str, enterprise_id: str) -> None:
        self.lock = threading.Lock()
        self.token = token
        self.enterprise_id = enterprise_id
        self.allocations: dict[str, _Allocation] = {}
        self.members: set[str] = set()
        self.faults: list[_Fault] = []
        self.requests: list[tuple[str, str, str, float]] = []
        self._last_created: datetime | None = None
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.allocations.clear()
            self.members = {self.enterprise_id, UNLICENSED_ENTERPRISE_ID}
            self.faults.clear()
            self.requests.clear()

    def record_request(self, method: str, path: str, query: str) -> None:
        with self.lock:
            self.requests.append((method, path, query, time.monotonic()))

    def take_fault(self, ids: list[str] | None, *, record_kind: bool) -> _Fault | None:
        """
        Consume one use of the first queued fault matching the request, if it is of the wanted family.

        :param ids: allocation ids the request concerns (None if unknown).
        :param record_kind: True to take record faults, False to take transport faults.
        """
        with self.lock:
            for index, fault in enumerate(self.faults):
                if not fault.matches(ids):
                    continue
                if (fault.kind in RECORD_FAULTS) != record_kind:
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    del self.faults[index]
                return copy.copy(fault)
        return None


class _FaultMiddleware:
    """ASGI wrapper: counts API requests and plays transport faults (including dropped connections)."""

    def __init__(self, app: ASGIApp, state: _State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        self.state.record_request(scope["method"], path, query)
        match = _SINGLE_RE.match(path)
        if match:
            ids: list[str] | None = [match.group(1)]
        else:
            ids = _csv(parse_qs(query).get("allocationIds", [None])[-1])
        fault = self.state.take_fault(ids, record_kind=False)
        if fault is None:
            await self.app(scope, receive, send)
            return
        scope[_FAULT_SCOPE_KEY] = fault.kind
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay if fault.delay is not None else 1.0)
            await self.app(scope, receive, send)
        elif fault.kind == "drop":
            await self._drop(send)
        elif fault.kind == "non_json":
            await Response("<html>oops</html>", status_code=200, media_type="text/html")(scope, receive, send)
        else:
            status, message, name = _FAULT_ERRORS[fault.kind]
            headers = None
            if fault.kind == "429" and fault.retry_after is not None:
                headers = {"Retry-After": _format_retry_after(fault.retry_after)}
            await _error(status, message, name, headers)(scope, receive, send)

    @staticmethod
    async def _drop(send: Send) -> None:
        body = json.dumps({"allocation": {"id": str(uuid.uuid4()), "status": "cleared"}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body) + 64).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        # Returning now makes uvicorn close the transport: the client gets a truncated body.


def _build_app(sim: OESSimulator) -> FastAPI:
    state = sim._state
    app = FastAPI(title="OES simulator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        name = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(code, "InvalidRequestError")
        return _error(code, str(getattr(exc, "detail", exc)), name)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: Exception) -> Response:
        return _error(400, str(exc), "InvalidRequestError")

    def check_access(request: Request, enterprise_id: str, stage: str) -> Response | None:
        if stage == "auth":
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or token.strip() != state.token:
                return _error(401, "Missing or invalid access token", "AuthenticationError")
            return None
        with state.lock:
            member = enterprise_id in state.members
        if not member:
            return _error(401, "Caller is not a member of the enterprise", "AuthenticationError")
        if enterprise_id == UNLICENSED_ENTERPRISE_ID:
            return _error(403, "Enterprise does not have OES license", "PermissionDeniedError")
        return None

    def fault_allowed(request: Request) -> bool:
        return _FAULT_SCOPE_KEY not in request.scope

    async def get_allocation(request: Request) -> Response:
        enterprise_id: str = request.path_params["enterprise_id"]
        allocation_id: str = request.path_params["allocation_id"]
        denied = check_access(request, enterprise_id, "auth")
        if denied is not None:
            return denied
        if not _is_uuid(allocation_id):
            return _error(400, "Invalid UUID format for allocationId", "InvalidRequestError")
        denied = check_access(request, enterprise_id, "membership")
        if denied is not None:
            return denied
        with state.lock:
            alloc = state.allocations.get(allocation_id)
            if alloc is None or alloc.enterprise_id != enterprise_id:
                return _error(404, f"Allocation {allocation_id} not found", "NotFoundError")
        fault = state.take_fault([allocation_id], record_kind=True) if fault_allowed(request) else None
        with state.lock:
            snapshot = alloc.observe()
            if fault is None:
                alloc.reads += 1
                record = alloc.render(snapshot)
            else:
                record = _apply_record_fault(fault.kind, alloc.render(snapshot))
        return JSONResponse({"allocation": record})

    async def list_allocations(request: Request) -> Response:
        enterprise_id: str = request.path_params["enterprise_id"]
        denied = check_access(request, enterprise_id, "auth")
        if denied is not None:
            return denied
        params = request.query_params
        ids = _csv(params.get("allocationIds"))
        if ids is not None and not all(_is_uuid(i) for i in ids):
            return _error(400, "Invalid UUID format for allocationIds", "InvalidRequestError")
        filters: dict[str, list[str] | None] = {}
        for name, allowed in (("statuses", STATUSES), ("types", TYPES)):
            values = _csv(params.get(name))
            if values is not None and any(v not in allowed for v in values):
                return _error(400, f"Invalid value in {name}: allowed {', '.join(allowed)}", "InvalidRequestError")
            filters[name] = values
        currencies = _csv(params.get("currencies"))
        connection_ids = _csv(params.get("connectionIds"))
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
        if (sort_field is not None and sort_field not in SORT_FIELDS) or direction not in ("ASC", "DESC"):
            return _error(400, "Invalid sort parameters", "InvalidRequestError")
        denied = check_access(request, enterprise_id, "membership")
        if denied is not None:
            return denied

        fault = state.take_fault(ids, record_kind=True) if fault_allowed(request) else None
        with state.lock:
            rows: list[tuple[_Allocation, tuple[str, str | None, datetime]]] = []
            for alloc in state.allocations.values():
                if alloc.enterprise_id != enterprise_id:
                    continue
                if ids is not None and alloc.id not in ids:
                    continue
                if filters["types"] is not None and alloc.type not in filters["types"]:
                    continue
                if currencies is not None and alloc.currency not in currencies:
                    continue
                if connection_ids is not None and alloc.connection_id not in connection_ids:
                    continue
                after, before = bounds["createdOnOrAfter"], bounds["createdBefore"]
                if (after is not None and alloc.created_at < after) or (
                    before is not None and alloc.created_at >= before
                ):
                    continue
                snapshot = alloc.observe()
                if filters["statuses"] is not None and snapshot[0] not in filters["statuses"]:
                    continue
                rows.append((alloc, snapshot))
            rows.sort(key=lambda row: (row[0].created_at, row[0].id))
            if sort_field is not None:
                rows.sort(key=lambda row: _sort_key(sort_field, row), reverse=direction == "DESC")
            page = rows[page_number * page_size : (page_number + 1) * page_size]
            records = []
            for alloc, snapshot in page:
                if fault is None:
                    alloc.reads += 1
                    records.append(alloc.render(snapshot))
                else:
                    records.append(_apply_record_fault(fault.kind, alloc.render(snapshot)))
        return JSONResponse({"allocations": records})

    # ----------------------------------------------------------------- control API (no auth)
    def control_error(exc: Exception) -> JSONResponse:
        status = 404 if isinstance(exc, KeyError) else 400
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return JSONResponse({"error": str(message)}, status_code=status)

    async def json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "url": sim.url, "token": sim.token, "enterpriseId": sim.enterprise_id})

    async def control_add(request: Request) -> Response:
        try:
            return JSONResponse({"id": sim.add_allocation(**(await json_body(request)))})
        except (ValueError, TypeError, KeyError) as exc:
            return control_error(exc)

    async def control_get(request: Request) -> Response:
        allocation_id: str = request.path_params["allocation_id"]
        try:
            return JSONResponse(sim.get_record(allocation_id))
        except KeyError as exc:
            return control_error(exc)

    async def control_status(request: Request) -> Response:
        allocation_id: str = request.path_params["allocation_id"]
        try:
            body = await json_body(request)
            sim.set_status(allocation_id, body["status"], reason=body.get("reason"))
            return JSONResponse(sim.get_record(allocation_id))
        except KeyError as exc:
            if exc.args and exc.args[0] == "status":
                return control_error(ValueError("'status' is required"))
            return control_error(exc)
        except (ValueError, TypeError) as exc:
            return control_error(exc)

    async def control_fault(request: Request) -> Response:
        try:
            sim.inject_fault(**(await json_body(request)))
        except (ValueError, TypeError) as exc:
            return control_error(exc)
        return JSONResponse({"faults": sim.faults})

    async def control_clear_faults(request: Request) -> Response:
        sim.clear_faults()
        return JSONResponse({"faults": []})

    async def control_stats(request: Request) -> Response:
        return JSONResponse({"request_count": sim.request_count, "requests": [list(r) for r in sim.requests]})

    async def control_reset_counts(request: Request) -> Response:
        sim.reset_counts()
        return JSONResponse({"request_count": 0})

    async def control_reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"ok": True})

    # Registered as plain Starlette routes: no signature introspection, so annotations stay static-only.
    single = API_PREFIX + "/{enterprise_id}/clients/allocations/{allocation_id}"
    for path, endpoint, method in (
        (single, get_allocation, "GET"),
        (API_PREFIX + "/{enterprise_id}/clients/allocations", list_allocations, "GET"),
        ("/_sim/health", health, "GET"),
        ("/_sim/allocations", control_add, "POST"),
        ("/_sim/allocations/{allocation_id}", control_get, "GET"),
        ("/_sim/allocations/{allocation_id}/status", control_status, "POST"),
        ("/_sim/faults", control_fault, "POST"),
        ("/_sim/faults", control_clear_faults, "DELETE"),
        ("/_sim/stats", control_stats, "GET"),
        ("/_sim/reset_counts", control_reset_counts, "POST"),
        ("/_sim/reset", control_reset, "POST"),
    ):
        app.add_route(path, endpoint, methods=[method])
    return app


def _sort_key(sort_field: str, row: tuple[_Allocation, tuple[str, str | None, datetime]]) -> Any:
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


class OESSimulator:
    """
    In-process OES API simulator: uvicorn serving a FastAPI app from a background thread.

    :param port: TCP port on 127.0.0.1; 0 picks a free one (read it back from :attr:`port`).
    :param token: bearer token the API accepts.
    :param enterprise_id: default enterprise (the caller is a member, and it is OES-licensed).
    :param ssl_certfile: PEM certificate to serve HTTPS with (with ``ssl_keyfile``); ``None``: plain HTTP.
    :param ssl_keyfile: PEM private key of ``ssl_certfile``.
    """

    def __init__(
        self,
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        enterprise_id: str = DEFAULT_ENTERPRISE_ID,
        *,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        self._ssl_certfile = ssl_certfile
        self._ssl_keyfile = ssl_keyfile
        if not token:
            raise ValueError("token must not be empty")
        if not enterprise_id:
            raise ValueError("enterprise_id must not be empty")
        self._requested_port = port
        self._port: int | None = None
        self._state = _State(token, enterprise_id)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> OESSimulator:
        """Bind 127.0.0.1, start uvicorn in a daemon thread and wait until it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self._requested_port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._port = sock.getsockname()[1]
        uvicorn_error = logging.getLogger("uvicorn.error")
        if _DROP_FILTER not in uvicorn_error.filters:
            uvicorn_error.addFilter(_DROP_FILTER)
        config = uvicorn.Config(
            _FaultMiddleware(_build_app(self), self._state),
            host="127.0.0.1",
            port=self._port,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ssl_certfile=self._ssl_certfile,
            ssl_keyfile=self._ssl_keyfile,
        )
        server = uvicorn.Server(config)
        self._server = server
        errors: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # pragma: no cover - surfaced to the caller of start()
                errors.append(exc)

        self._thread = threading.Thread(target=run, name=f"oes-simulator-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if errors or not self._thread.is_alive() or time.monotonic() > deadline:
                self._cleanup()
                raise RuntimeError(f"the OES simulator failed to start: {errors[0] if errors else 'timeout'}")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._server = None
        self._thread = None

    def __enter__(self) -> OESSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        """The bound TCP port (only known once started)."""
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080`` (``https://`` when serving TLS)."""
        return f"{'https' if self._ssl_certfile else 'http'}://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The bearer token the API accepts."""
        return self._state.token

    @property
    def enterprise_id(self) -> str:
        """The default enterprise id."""
        return self._state.enterprise_id

    @property
    def request_count(self) -> int:
        """Number of API requests served (control-API requests are not counted)."""
        with self._state.lock:
            return len(self._state.requests)

    @property
    def requests(self) -> list[tuple[str, str, str, float]]:
        """A copy of the API requests served: ``(method, path, query_string, time.monotonic())``."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def faults(self) -> list[dict[str, Any]]:
        """The queued faults, first to be consumed first."""
        with self._state.lock:
            return [fault.as_dict() for fault in self._state.faults]

    # ------------------------------------------------------------------ scripting
    def add_allocation(
        self,
        allocation_id: str | None = None,
        final_status: str = "cleared",
        reserved_for_seconds: float | None = None,
        reserved_for_reads: int | None = None,
        reserved_reason: str = DEFAULT_RESERVED_REASON,
        final_reason: str | None = None,
        currency: str = "ofctbtc",
        quantity: str | int = "100000000",
        type: str = "allocation",
        enterprise_id: str | None = None,
        client_external_id: str | None = None,
        connection_id: str | None = None,
        extra_fields: dict[str, Any] | None = None,
        initiated_by: str = DEFAULT_INITIATED_BY,
        partner_external_id: str | None = None,
        notes: str | None = None,
        retriable: bool = False,
        created_at: datetime | str | None = None,
    ) -> str:
        """
        Add an allocation and script its timeline; return its id.

        The allocation is ``reserved`` until ``reserved_for_seconds`` have passed since this call
        and it has been read ``reserved_for_reads`` times (either or both may be given); it then
        shows ``final_status`` with ``updatedAt`` set to the moment of the flip. With neither given
        it is created directly in ``final_status``. ``final_status="reserved"`` stays reserved.

        :param allocation_id: UUID of the record; a new uuid4 when None.
        :param final_status: ``cleared``, ``released`` or ``reserved``.
        :param reserved_for_seconds: seconds the record stays reserved after creation.
        :param reserved_for_reads: number of API reads (single GET or list item) answered reserved.
        :param reserved_reason: ``reason`` while reserved.
        :param final_reason: ``reason`` once final (``released`` defaults to "insufficient balance";
            ``cleared`` always has ``reason: null`` unless overridden through ``extra_fields``).
        :param currency: ``amount.currency``.
        :param quantity: ``amount.quantity`` in base units (kept as a string, exactly).
        :param type: ``allocation`` or ``deallocation``.
        :param enterprise_id: owning enterprise (default: the simulator's); the caller becomes a member.
        :param client_external_id: ``clientExternalId`` (default derived from the id).
        :param connection_id: ``connectionId`` (default :data:`DEFAULT_CONNECTION_ID`).
        :param extra_fields: merged last into the JSON record (may add or override any field).
        :param initiated_by: ``initiatedBy``.
        :param partner_external_id: ``partnerExternalId`` (omitted when None).
        :param notes: ``notes`` (omitted when None).
        :param retriable: ``retriable``.
        :param created_at: ``createdAt`` (datetime or ISO string; default now).
        """
        if final_status not in STATUSES:
            raise ValueError(f"final_status must be one of {STATUSES}, not {final_status!r}")
        if type not in TYPES:
            raise ValueError(f"type must be one of {TYPES}, not {type!r}")
        if reserved_for_seconds is not None and reserved_for_seconds < 0:
            raise ValueError("reserved_for_seconds must be >= 0")
        if reserved_for_reads is not None and reserved_for_reads < 0:
            raise ValueError("reserved_for_reads must be >= 0")
        allocation_id = allocation_id or str(uuid.uuid4())
        if not _is_uuid(allocation_id):
            raise ValueError(f"allocation_id must be a UUID, not {allocation_id!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, (str, int)):
            raise TypeError("quantity must be a string (or an int) of base units")
        if isinstance(created_at, str):
            created_at = _parse_iso(created_at)
        enterprise = enterprise_id or self.enterprise_id
        state = self._state
        with state.lock:
            if allocation_id in state.allocations:
                raise ValueError(f"allocation {allocation_id} already exists")
            if created_at is None:
                created_at = _now()
                # keep insertion order == createdAt order, even within one clock tick
                if state._last_created is not None and created_at <= state._last_created:
                    created_at = state._last_created + timedelta(microseconds=1)
                state._last_created = created_at
            elif created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=timezone.utc)
            state.allocations[allocation_id] = _Allocation(
                id=allocation_id,
                enterprise_id=enterprise,
                final_status=final_status,
                reserved_for_seconds=reserved_for_seconds,
                reserved_for_reads=reserved_for_reads,
                reserved_reason=reserved_reason,
                final_reason=final_reason,
                currency=currency,
                quantity=str(quantity),
                type=type,
                client_external_id=client_external_id or f"sim-{allocation_id[:8]}",
                connection_id=connection_id or DEFAULT_CONNECTION_ID,
                initiated_by=initiated_by,
                partner_external_id=partner_external_id,
                notes=notes,
                retriable=retriable,
                extra_fields=dict(extra_fields or {}),
                created_at=created_at,
                created_mono=time.monotonic(),
            )
            state.members.add(enterprise)
        return allocation_id

    def set_status(self, allocation_id: str, status: str, reason: str | None = None) -> None:
        """
        Change an allocation's status now, overriding its timeline (``updatedAt`` becomes now).

        :param allocation_id: the allocation to change.
        :param status: ``cleared``, ``released`` or ``reserved``.
        :param reason: new ``reason``; default None for cleared, the reserved reason for reserved,
            the final reason or "insufficient balance" for released.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        with self._state.lock:
            alloc = self._state.allocations.get(allocation_id)
            if alloc is None:
                raise KeyError(f"unknown allocation {allocation_id}")
            if reason is None and status == "reserved":
                reason = alloc.reserved_reason
            elif reason is None and status == "released":
                reason = alloc.final_reason or DEFAULT_RELEASED_REASON
            updated = max(_now(), alloc.created_at)
            alloc.override = (status, reason, updated)

    def get_record(self, allocation_id: str) -> dict[str, Any]:
        """
        Return the allocation's current JSON record (API shape) without counting a read.

        :param allocation_id: the allocation.
        """
        with self._state.lock:
            alloc = self._state.allocations.get(allocation_id)
            if alloc is None:
                raise KeyError(f"unknown allocation {allocation_id}")
            return alloc.render()

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        allocation_id: str | None = None,
        retry_after: float | str | None = None,
        delay: float | None = None,
    ) -> None:
        """
        Queue a fault for the next ``count`` matching API requests.

        :param kind: one of :data:`FAULT_KINDS`.
        :param count: number of requests it applies to (>= 1).
        :param allocation_id: only requests for this allocation; None matches any request.
        :param retry_after: ``Retry-After`` header value for ``429`` (no header when None).
        :param delay: seconds to wait for ``slow`` (default 1.0).
        """
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        with self._state.lock:
            self._state.faults.append(_Fault(kind, int(count), allocation_id, retry_after, delay))

    def clear_faults(self) -> None:
        """Remove every queued fault."""
        with self._state.lock:
            self._state.faults.clear()

    def reset_counts(self) -> None:
        """Forget the API requests served so far."""
        with self._state.lock:
            self._state.requests.clear()

    def reset(self) -> None:
        """Forget allocations, faults, counts and added enterprise memberships."""
        self._state.reset()


# ---------------------------------------------------------------------------- out-of-process use
class OESSimulatorClient:
    """
    Drive a simulator running elsewhere through its ``/_sim/`` control API.

    :param url: the simulator's base URL, e.g. ``http://127.0.0.1:8080``.
    :param timeout: HTTP timeout in seconds.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            if response.status_code == 404:
                raise KeyError(message)
            raise ValueError(message)
        return response.json()

    def health(self) -> dict[str, Any]:
        """Return ``/_sim/health`` (status, url, token, enterpriseId)."""
        result: dict[str, Any] = self._call("GET", "/_sim/health")
        return result

    def add_allocation(self, **kwargs: Any) -> str:
        """
        Add an allocation; see :meth:`OESSimulator.add_allocation` for the keyword arguments.

        :param kwargs: JSON-serialisable keyword arguments (``created_at`` as an ISO string).
        """
        if isinstance(kwargs.get("created_at"), datetime):
            kwargs["created_at"] = kwargs["created_at"].isoformat()
        return str(self._call("POST", "/_sim/allocations", kwargs)["id"])

    def set_status(self, allocation_id: str, status: str, reason: str | None = None) -> None:
        """
        Change an allocation's status now.

        :param allocation_id: the allocation.
        :param status: ``cleared``, ``released`` or ``reserved``.
        :param reason: the new reason (see :meth:`OESSimulator.set_status`).
        """
        self._call("POST", f"/_sim/allocations/{allocation_id}/status", {"status": status, "reason": reason})

    def get_record(self, allocation_id: str) -> dict[str, Any]:
        """
        Return the current JSON record of an allocation (no read counted).

        :param allocation_id: the allocation.
        """
        record: dict[str, Any] = self._call("GET", f"/_sim/allocations/{allocation_id}")
        return record

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        allocation_id: str | None = None,
        retry_after: float | str | None = None,
        delay: float | None = None,
    ) -> None:
        """
        Queue a fault; see :meth:`OESSimulator.inject_fault`.

        :param kind: fault kind.
        :param count: number of requests it applies to.
        :param allocation_id: restrict to this allocation.
        :param retry_after: ``Retry-After`` for ``429``.
        :param delay: seconds for ``slow``.
        """
        body = {
            "kind": kind,
            "count": count,
            "allocation_id": allocation_id,
            "retry_after": retry_after,
            "delay": delay,
        }
        self._call("POST", "/_sim/faults", body)

    def clear_faults(self) -> None:
        """Remove every queued fault."""
        self._call("DELETE", "/_sim/faults")

    @property
    def request_count(self) -> int:
        """Number of API requests the simulator has served."""
        return int(self._call("GET", "/_sim/stats")["request_count"])

    @property
    def requests(self) -> list[tuple[str, str, str, float]]:
        """The API requests served: ``(method, path, query_string, monotonic time in the server)``."""
        rows: list[list[Any]] = self._call("GET", "/_sim/stats")["requests"]
        return [(str(m), str(p), str(q), float(t)) for m, p, q, t in rows]

    def reset_counts(self) -> None:
        """Forget the API requests served so far."""
        self._call("POST", "/_sim/reset_counts")

    def reset(self) -> None:
        """Forget allocations, faults and counts."""
        self._call("POST", "/_sim/reset")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()


class OESSimulatorProcess:
    """
    Run the simulator in a child process (``python -m airflow_provider_oes.testing.simulator``).

    :param port: port for the child; 0 lets it pick a free one.
    :param token: bearer token the API accepts.
    :param enterprise_id: default enterprise id.
    :param startup_timeout: seconds to wait for ``/_sim/health``.
    """

    def __init__(
        self,
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        enterprise_id: str = DEFAULT_ENTERPRISE_ID,
        startup_timeout: float = 20.0,
    ) -> None:
        self.port = port
        self.token = token
        self.enterprise_id = enterprise_id
        self.startup_timeout = startup_timeout
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._client: OESSimulatorClient | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        #: Exit code of the child once stopped (0 when it shut down cleanly on SIGTERM).
        self.returncode: int | None = None

    @property
    def client(self) -> OESSimulatorClient:
        """Control-API client for the child simulator."""
        if self._client is None:
            raise RuntimeError("the simulator process is not started")
        return self._client

    @property
    def pid(self) -> int:
        """Process id of the child."""
        if self._proc is None:
            raise RuntimeError("the simulator process is not started")
        return self._proc.pid

    def start(self) -> OESSimulatorProcess:
        """Spawn the child, read its URL from stdout and wait until ``/_sim/health`` answers."""
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-m",
            "airflow_provider_oes.testing.simulator",
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--enterprise-id",
            self.enterprise_id,
        ]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._pump, args=(self._proc,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            while not self.url:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
                if line is None:
                    raise RuntimeError(f"the simulator process exited with {self._proc.wait()}")
                found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
                if found:
                    self.url = found.group(1)
                    self.port = int(self.url.rsplit(":", 1)[1])
            self._client = OESSimulatorClient(self.url)
            while True:
                try:
                    self._client.health()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s) and close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self.returncode = self._proc.returncode
            self._proc = None

    def __enter__(self) -> OESSimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------- command line
def seed_demo(sim: OESSimulator) -> dict[str, str]:
    """
    Add the demo allocations: one clearing after 3 s, one released after 3 s, one reserved forever.

    :param sim: the simulator to seed.
    :return: label -> allocation id.
    """
    return {
        "clears_after_3s": sim.add_allocation(final_status="cleared", reserved_for_seconds=3),
        "released_after_3s": sim.add_allocation(
            final_status="released", reserved_for_seconds=3, final_reason=DEFAULT_RELEASED_REASON
        ),
        "reserved_forever": sim.add_allocation(final_status="reserved"),
    }


def main(argv: list[str] | None = None) -> int:
    """
    Run the simulator in the foreground until SIGINT or SIGTERM.

    :param argv: command-line arguments (default ``sys.argv[1:]``).
    :return: the process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_oes.testing.simulator",
        description="Local OES client-allocation API simulator (binds 127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free one (default 8080)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token to accept")
    parser.add_argument("--enterprise-id", default=DEFAULT_ENTERPRISE_ID, help="default enterprise id")
    parser.add_argument("--seed-demo", action="store_true", help="add a few demo allocations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim = OESSimulator(port=args.port, token=args.token, enterprise_id=args.enterprise_id)
    sim.start()
    try:
        print(f"OES simulator on {sim.url} token={sim.token} enterprise={sim.enterprise_id}", flush=True)
        if args.seed_demo:
            for label, allocation_id in seed_demo(sim).items():
                print(f"seeded {label} {allocation_id}", flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        with contextlib.suppress(Exception):
            sim.stop()
    print("OES simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

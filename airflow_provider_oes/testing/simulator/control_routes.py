"""
The JSON control API under ``/_sim/`` (no auth, not counted): drives a simulator living in another process.

Each route calls the public Python method of the same name on the :class:`OESSimulator`. Bad input
answers 400 ``{"error": ...}``; an unknown allocation answers 404.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from airflow_provider_oes.testing.simulator.server import OESSimulator


def _sim(request: Request) -> OESSimulator:
    sim: OESSimulator = request.app.state.simulator
    return sim


def _control_error(exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, KeyError) else 400
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return JSONResponse({"error": str(message)}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = json.loads(raw) if raw else {}
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


async def health(request: Request) -> Response:
    """``GET /_sim/health`` -> ``{"status": "ok", "url", "token", "enterpriseId"}``."""
    sim = _sim(request)
    return JSONResponse({"status": "ok", "url": sim.url, "token": sim.token, "enterpriseId": sim.enterprise_id})


async def add_allocation(request: Request) -> Response:
    """``POST /_sim/allocations`` (body: ``add_allocation`` kwargs) -> ``{"id": ...}``."""
    try:
        return JSONResponse({"id": _sim(request).add_allocation(**(await _json_body(request)))})
    except (ValueError, TypeError, KeyError) as exc:
        return _control_error(exc)


async def get_record(request: Request) -> Response:
    """``GET /_sim/allocations/{id}`` -> the current record (no read counted)."""
    try:
        return JSONResponse(_sim(request).get_record(request.path_params["allocation_id"]))
    except KeyError as exc:
        return _control_error(exc)


async def set_status(request: Request) -> Response:
    """``POST /_sim/allocations/{id}/status`` (``{"status", "reason"}``) -> the record."""
    sim = _sim(request)
    allocation_id: str = request.path_params["allocation_id"]
    try:
        body = await _json_body(request)
        if "status" not in body:
            raise ValueError("'status' is required")
        sim.set_status(allocation_id, body["status"], reason=body.get("reason"))
        return JSONResponse(sim.get_record(allocation_id))
    except (KeyError, ValueError, TypeError) as exc:
        return _control_error(exc)


async def inject_fault(request: Request) -> Response:
    """``POST /_sim/faults`` (``inject_fault`` kwargs) -> ``{"faults": [...]}``."""
    sim = _sim(request)
    try:
        sim.inject_fault(**(await _json_body(request)))
    except (ValueError, TypeError) as exc:
        return _control_error(exc)
    return JSONResponse({"faults": sim.faults})


async def clear_faults(request: Request) -> Response:
    """``DELETE /_sim/faults`` -> ``{"faults": []}``."""
    _sim(request).clear_faults()
    return JSONResponse({"faults": []})


async def stats(request: Request) -> Response:
    """``GET /_sim/stats`` -> ``{"request_count": n, "requests": [[method, path, query, t], ...]}``."""
    sim = _sim(request)
    return JSONResponse({"request_count": sim.request_count, "requests": [list(r) for r in sim.requests]})


async def reset_counts(request: Request) -> Response:
    """``POST /_sim/reset_counts``: forget the API requests served."""
    _sim(request).reset_counts()
    return JSONResponse({"request_count": 0})


async def reset(request: Request) -> Response:
    """``POST /_sim/reset``: forget allocations, faults and counts."""
    _sim(request).reset()
    return JSONResponse({"ok": True})


#: (path, endpoint, method) of every control route.
CONTROL_ROUTES = (
    ("/_sim/health", health, "GET"),
    ("/_sim/allocations", add_allocation, "POST"),
    ("/_sim/allocations/{allocation_id}", get_record, "GET"),
    ("/_sim/allocations/{allocation_id}/status", set_status, "POST"),
    ("/_sim/faults", inject_fault, "POST"),
    ("/_sim/faults", clear_faults, "DELETE"),
    ("/_sim/stats", stats, "GET"),
    ("/_sim/reset_counts", reset_counts, "POST"),
    ("/_sim/reset", reset, "POST"),
)

"""
The JSON control API under ``/_sim/`` (no auth, not counted): drives a simulator living in another process.

Each route calls the public Python method of the same name on the :class:`OESSimulator`, with the JSON
body as keyword arguments. Bad input answers 400 ``{"error": ...}``; an unknown allocation answers 404.

=============================================  ==============================================================
``GET /_sim/health``                           ``{"status": "ok", "url", "token", "enterpriseId"}``
``POST /_sim/allocations``                     ``add_allocation`` -> ``{"id"}``
``POST /_sim/allocations/bulk``                ``add_allocations`` -> ``{"ids"}``
``GET /_sim/allocations/{id}``                 the current record (no read counted)
``POST /_sim/allocations/{id}/status``         ``set_status`` (``status``, ``reason``, ``late_by``) -> record
``POST /_sim/partners``                        ``add_partner`` -> ``{"id"}``
``POST /_sim/settlements``                     ``add_settlement`` -> ``{"id"}``
``GET /_sim/settlements/{id}``                 the current settlement record
``POST /_sim/settlements/{id}/status``         ``set_settlement_status`` (``status``, ``reason``) -> record
``POST /_sim/disputes``                        ``raise_dispute`` -> ``{"id"}``
``POST /_sim/disputes/{id}/retract``           ``retract_dispute`` (``reason``)
``POST /_sim/flips``                           ``schedule_flips`` -> ``{"last_in": seconds}``
``POST /_sim/flips/after_requests``            ``flip_after_requests``
``GET /_sim/flips``                            ``{"pending": n}``
``POST /_sim/faults`` / ``DELETE /_sim/faults``  ``inject_fault`` / ``clear_faults`` -> ``{"faults"}``
``GET|POST /_sim/clock``                       ``{"now", "offset"}`` / ``set_clock_offset`` (``seconds``)
``GET|POST /_sim/rate_limit``                  ``{"limit", "window"}`` / ``set_rate_limit``
``POST /_sim/token_requests``                  ``token_requests`` (``token``) -> ``{"requests"}``
``POST /_sim/tokens``                          ``add_token`` (``token``)
``POST /_sim/list_rejection``                  ``reject_list`` (``status``, ``feed_only``)
``GET /_sim/stats``                            ``{"request_count", "requests", "enterprise_id_headers"}``
``POST /_sim/reset_counts`` / ``/_sim/reset``  ``reset_counts`` / ``reset``
=============================================  ==============================================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from airflow_provider_oes.testing.simulator._common import iso_ms, to_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from airflow_provider_oes.testing.simulator.server import OESSimulator

    _Endpoint = Callable[[Request], Awaitable[Response]]


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


def _route(call: Callable[[OESSimulator, dict[str, Any]], Any]) -> _Endpoint:
    """An endpoint calling ``call(simulator, json_body)`` and answering its result as JSON (path parameters
    join the body, so ``/_sim/settlements/{settlement_id}/status`` passes ``settlement_id``)."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(call(_sim(request), {**await _json_body(request), **request.path_params}))
        except (ValueError, TypeError, KeyError) as exc:
            return _control_error(exc)

    return endpoint


def _health(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "url": sim.url, "token": sim.token, "enterpriseId": sim.enterprise_id}


def _clock(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    return {"now": iso_ms(to_ms(sim.now())), "offset": sim.clock_offset}


def _set_clock(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.set_clock_offset(**body)
    return _clock(sim, {})


def _rate_limit(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    limit = sim.rate_limit
    return {"limit": None, "window": None} if limit is None else {"limit": limit[0], "window": limit[1]}


def _set_rate_limit(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.set_rate_limit(**body)
    return _rate_limit(sim, {})


def _stats(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_count": sim.request_count,
        "requests": [list(r) for r in sim.requests],
        "enterprise_id_headers": sim.enterprise_id_headers,
    }


def _inject_fault(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.inject_fault(**body)
    return {"faults": sim.faults}


def _set_settlement_status(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.set_settlement_status(**body)
    return sim.get_settlement_record(body["settlement_id"])


def _done(method: str, **answer: Any) -> Callable[[OESSimulator, dict[str, Any]], Any]:
    """A call of the simulator's ``method(**body)`` answering ``answer`` (for methods returning nothing)."""

    def call(sim: OESSimulator, body: dict[str, Any]) -> dict[str, Any]:
        getattr(sim, method)(**body)
        return answer

    return call


async def get_record(request: Request) -> Response:
    """``GET /_sim/allocations/{id}`` -> the current record (no read counted)."""
    try:
        return JSONResponse(_sim(request).get_record(request.path_params["allocation_id"]))
    except KeyError as exc:
        return _control_error(exc)


async def set_status(request: Request) -> Response:
    """``POST /_sim/allocations/{id}/status`` (``{"status", "reason", "late_by"}``) -> the record."""
    sim = _sim(request)
    allocation_id: str = request.path_params["allocation_id"]
    try:
        body = await _json_body(request)
        if "status" not in body:
            raise ValueError("'status' is required")
        sim.set_status(allocation_id, **body)
        return JSONResponse(sim.get_record(allocation_id))
    except (KeyError, ValueError, TypeError) as exc:
        return _control_error(exc)


def control_routes() -> list[tuple[str, _Endpoint, str]]:
    """(path, endpoint, method) of every control route."""
    return [
        ("/_sim/health", _route(_health), "GET"),
        ("/_sim/allocations", _route(lambda s, b: {"id": s.add_allocation(**b)}), "POST"),
        ("/_sim/allocations/bulk", _route(lambda s, b: {"ids": s.add_allocations(**b)}), "POST"),
        ("/_sim/allocations/{allocation_id}", get_record, "GET"),
        ("/_sim/allocations/{allocation_id}/status", set_status, "POST"),
        ("/_sim/partners", _route(lambda s, b: {"id": s.add_partner(**b)}), "POST"),
        ("/_sim/settlements", _route(lambda s, b: {"id": s.add_settlement(**b)}), "POST"),
        ("/_sim/settlements/{settlement_id}", _route(lambda s, b: s.get_settlement_record(**b)), "GET"),
        ("/_sim/settlements/{settlement_id}/status", _route(_set_settlement_status), "POST"),
        ("/_sim/disputes", _route(lambda s, b: {"id": s.raise_dispute(**b)}), "POST"),
        ("/_sim/disputes/{dispute_id}/retract", _route(_done("retract_dispute", ok=True)), "POST"),
        ("/_sim/flips", _route(lambda s, b: {"last_in": s.schedule_flips(**b)}), "POST"),
        ("/_sim/flips/after_requests", _route(_done("flip_after_requests", ok=True)), "POST"),
        ("/_sim/flips", _route(lambda s, b: {"pending": s.pending_flips}), "GET"),
        ("/_sim/faults", _route(_inject_fault), "POST"),
        ("/_sim/faults", _route(_done("clear_faults", faults=[])), "DELETE"),
        ("/_sim/clock", _route(_clock), "GET"),
        ("/_sim/clock", _route(_set_clock), "POST"),
        ("/_sim/rate_limit", _route(_rate_limit), "GET"),
        ("/_sim/rate_limit", _route(_set_rate_limit), "POST"),
        ("/_sim/token_requests", _route(lambda s, b: {"requests": s.token_requests(**b)}), "POST"),
        ("/_sim/tokens", _route(_done("add_token", ok=True)), "POST"),
        ("/_sim/list_rejection", _route(_done("reject_list", ok=True)), "POST"),
        ("/_sim/stats", _route(_stats), "GET"),
        ("/_sim/reset_counts", _route(_done("reset_counts", request_count=0)), "POST"),
        ("/_sim/reset", _route(_done("reset", ok=True)), "POST"),
    ]

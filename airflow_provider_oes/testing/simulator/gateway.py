"""
What sits in front of the API routes, as a gateway would: request counting, the per-token rate limit,
transport faults, the ``Date`` header, and flips waiting for a number of answered requests.

In order, for each API request: it is counted; a valid token over its rate limit gets 429 with
``Retry-After``; a queued transport fault (``500``, ``502``, ``503``, ``429``, ``slow``, ``drop``,
``non_json``) is played, before auth and validation; otherwise the routes answer. Every answer carries
``Date`` from the simulator's clock. Control routes (``/_sim/...``) pass straight through, not counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi.responses import Response

from airflow_provider_oes.testing.simulator._common import ENTERPRISE_HEADER, bearer_token, csv_values, error_response
from airflow_provider_oes.testing.simulator.faults import FAULT_ERRORS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from airflow_provider_oes.testing.simulator.state import State

#: Set in the ASGI scope of a request that took a transport fault: it takes no record fault then.
FAULT_SCOPE_KEY = "oes_simulator.fault_taken"
#: the GET of one allocation or settlement: a fault queued for its id matches it
_SINGLE_RE = re.compile(r"^/api/network/v1/enterprises/[^/]+/clients/(?:allocations|settlements)/([^/]+)/?$")
_DROP_LOG_MESSAGE = "ASGI callable returned without completing response."


class _DropLogFilter(logging.Filter):
    """Silence uvicorn's error line for the deliberately incomplete ``drop`` responses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROP_LOG_MESSAGE


DROP_FILTER = _DropLogFilter()


def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class Gateway:
    """ASGI wrapper: counts API requests and plays transport faults (including dropped connections)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")
        answered = [False]
        send = self._dated(send, answered if api else None)
        if not api:
            await self.app(scope, receive, send)
            return
        try:
            await self._api_request(scope, receive, send)
        finally:
            if not answered[0]:
                self.state.request_answered()

    def _dated(self, send: Send, answered: list[bool] | None) -> Send:
        """
        Wrap ``send`` so the answer carries ``Date`` from the simulator's clock (not the machine's).

        :param answered: for an API request, set when its answer starts: flips waiting for answered
            requests apply then, before the client can read the answer and send its next request.
        """
        state = self.state

        async def dated_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", state.clock.http_date().encode("latin-1"))]}
                if answered is not None and not answered[0]:
                    answered[0] = True
                    state.request_answered()
            await send(message)

        return dated_send

    async def _api_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        self.state.record_request(scope["method"], path, query, headers.get(ENTERPRISE_HEADER))
        token = bearer_token(headers.get("authorization", ""))
        with self.state.lock:
            valid = token is not None and token in self.state.tokens
        if valid and token is not None:
            retry_after = self.state.rate_limit.admit(token, time.monotonic())
            if retry_after is not None:
                message = "Too many requests: rate limit exceeded for this access token"
                headers = {"Retry-After": str(retry_after)}
                await error_response(429, message, "RateLimitExceededError", headers)(scope, receive, send)
                return
        match = _SINGLE_RE.match(path)
        if match:
            ids: list[str] | None = [match.group(1)]
        else:
            ids = csv_values(parse_qs(query).get("allocationIds", [None])[-1])
        fault = self.state.faults.take(ids, record_kind=False)
        if fault is None:
            await self.app(scope, receive, send)
            return
        scope[FAULT_SCOPE_KEY] = fault.kind
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay if fault.delay is not None else 1.0)
            await self.app(scope, receive, send)
        elif fault.kind == "drop":
            await self._drop(send)
        elif fault.kind == "non_json":
            await Response("<html>oops</html>", status_code=200, media_type="text/html")(scope, receive, send)
        else:
            status, message, name = FAULT_ERRORS[fault.kind]
            fault_headers = None
            if fault.kind == "429" and fault.retry_after is not None:
                fault_headers = {"Retry-After": _format_retry_after(fault.retry_after)}
            await error_response(status, message, name, fault_headers)(scope, receive, send)

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

"""The in-process simulator: the FastAPI app assembled from the routes, served by uvicorn in a thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_oes.testing.simulator import api_routes
from airflow_provider_oes.testing.simulator._common import (
    BITGO_RATE_LIMIT,
    DEFAULT_ENTERPRISE_ID,
    DEFAULT_TOKEN,
    Runnable,
    error_response,
)
from airflow_provider_oes.testing.simulator.conditions import ServerConditions
from airflow_provider_oes.testing.simulator.control_routes import control_routes
from airflow_provider_oes.testing.simulator.gateway import DROP_FILTER, Gateway
from airflow_provider_oes.testing.simulator.scripting import AllocationScripting
from airflow_provider_oes.testing.simulator.settlement_routes import settlement_routes
from airflow_provider_oes.testing.simulator.settlement_scripting import SettlementScripting
from airflow_provider_oes.testing.simulator.state import State

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


async def _http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    name = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(code, "InvalidRequestError")
    return error_response(code, str(getattr(exc, "detail", exc)), name)


async def _validation_error(request: Request, exc: Exception) -> Response:
    return error_response(400, str(exc), "InvalidRequestError")


def _build_app(sim: OESSimulator) -> FastAPI:
    """The FastAPI app of one simulator: API routes, control routes and BitGo-shaped error answers."""
    app = FastAPI(title="OES simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.oes_state = sim._state
    app.state.simulator = sim
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Registered as plain Starlette routes: no signature introspection, so annotations stay static-only.
    routes = (
        (api_routes.SINGLE_PATH, api_routes.get_allocation, "GET"),
        (api_routes.LIST_PATH, api_routes.list_allocations, "GET"),
        *settlement_routes(),
        *control_routes(),
    )
    for path, endpoint, method in routes:
        app.add_route(path, endpoint, methods=[method])
    return app


class OESSimulator(AllocationScripting, SettlementScripting, ServerConditions, Runnable):
    """
    In-process OES API simulator: uvicorn serving a FastAPI app from a background thread.

    Use it as a context manager (``with OESSimulator() as sim: ...``) or call :meth:`start` and
    :meth:`stop`. The scripting methods (:meth:`add_allocation`, :meth:`set_status`,
    :meth:`schedule_flips`, :meth:`inject_fault`, ...) and the settlement ones (:meth:`add_partner`,
    :meth:`add_settlement`, :meth:`raise_dispute`, ...) work before and after start.

    :param port: TCP port on 127.0.0.1; 0 picks a free one (read it back from :attr:`port`).
    :param token: bearer token the API accepts.
    :param enterprise_id: default enterprise (the caller is a member, and it is OES-licensed).
    :param rate_limit: ``(requests, window seconds)`` allowed per token across all clients, BitGo's
        360 per 60 s by default; None for no limit (e.g. a benchmark of client CPU cost).
    :param clock_offset: seconds the simulator's clock runs ahead of the machine's (skew against clients).
    :param ssl_certfile: PEM certificate to serve HTTPS with (with ``ssl_keyfile``); ``None``: plain HTTP.
    :param ssl_keyfile: PEM private key of ``ssl_certfile``.
    """

    def __init__(
        self,
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        enterprise_id: str = DEFAULT_ENTERPRISE_ID,
        *,
        rate_limit: tuple[int, float] | None = BITGO_RATE_LIMIT,
        clock_offset: float = 0.0,
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
        self._state = State(token, enterprise_id, clock_offset=clock_offset, rate_limit=rate_limit)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

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
        if DROP_FILTER not in uvicorn_error.filters:
            uvicorn_error.addFilter(DROP_FILTER)
        config = uvicorn.Config(
            Gateway(_build_app(self), self._state),
            host="127.0.0.1",
            port=self._port,
            log_level="warning",
            log_config=None,
            access_log=False,
            date_header=False,  # the gateway stamps Date from the simulator's clock
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

    @property
    def port(self) -> int:
        """The bound TCP port (only known once started)."""
        return self._require_started(self._port)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080`` (``https://`` when serving TLS)."""
        return f"{'https' if self._ssl_certfile else 'http'}://127.0.0.1:{self.port}"

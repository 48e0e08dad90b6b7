"""Fixtures of the reliability suite: a simulator with a known token, fast retry settings, the figures.

Every test here that runs the provider against faults also counts what it saw in :data:`FIGURES`;
the session prints them at the end (``pytest tests/reliability -s`` or the terminal summary), so the
issue's closing note can quote them: fault cases, hypothesis examples, bad inputs, false successes,
token leaks.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.testing.simulator import OESSimulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TOKEN = "oes-secret-token-3f9a7c1e5b2d4e6f"
"""The access token of every connection in this suite; it must never show up in any output."""
ENTERPRISE_ID = "reliability-enterprise"
CONN_ID = "oes_default"
FAST_EXTRAS: dict[str, Any] = {
    "enterprise_id": ENTERPRISE_ID,
    "max_retries": 2,
    "retry_max_wait": 0.02,
    "read_timeout": 0.3,
    "connect_timeout": 1.0,
}
"""Connection extras that keep the suite fast: 3 attempts per call, backoff capped at 20 ms."""

FIGURES: Counter[str] = Counter()
"""Figures for the closing note, filled in by the tests."""


def connection_json(host: str, token: str = TOKEN, **extras: Any) -> str:
    """Return an ``AIRFLOW_CONN_*`` JSON value for an ``oes`` connection with the fast extras.

    :param host: the connection's Host (base URL).
    :param token: the access token (Password).
    :param extras: extras that override :data:`FAST_EXTRAS` (a value of ``None`` removes one).
    """
    extra = {**FAST_EXTRAS, **extras}
    extra = {k: v for k, v in extra.items() if v is not None}
    return json.dumps({"conn_type": "oes", "host": host, "password": token, "extra": extra})


@pytest.fixture(scope="session")
def reliability_simulator_session() -> Iterator[OESSimulator]:
    """One simulator with the suite's known token, on a free 127.0.0.1 port."""
    with OESSimulator(port=0, token=TOKEN, enterprise_id=ENTERPRISE_ID) as sim:
        yield sim


@pytest.fixture
def sim(reliability_simulator_session: OESSimulator) -> Iterator[OESSimulator]:
    """The suite's simulator, reset before and after the test."""
    reliability_simulator_session.reset()
    yield reliability_simulator_session
    reliability_simulator_session.reset()


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Return a function that (re)defines connection ``oes_default``; see :func:`connection_json`."""

    def _set(host: str, token: str = TOKEN, **extras: Any) -> str:
        monkeypatch.setenv("AIRFLOW_CONN_OES_DEFAULT", connection_json(host, token, **extras))
        return CONN_ID

    return _set


@pytest.fixture
def sim_conn(sim: OESSimulator, set_conn: Callable[..., str]) -> str:
    """Connection ``oes_default`` pointing at the simulator with the fast extras."""
    return set_conn(sim.url)


class DripHandler(http.server.BaseHTTPRequestHandler):
    """Answers 200 at once, then drips the body one byte every 50 ms: each read is quick, the whole is not."""

    hits = 0
    """Requests received (a client stuck on one body sends no more)."""

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "declared" in self.path:
            self.send_header("Content-Length", "400")
        self.end_headers()
        try:
            for _ in range(2_000):  # 100 s at most; the client is expected to hang up long before
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def drip_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the issue's closing note asks for."""
    if not FIGURES:
        return
    terminalreporter.section("OES reliability figures")
    for name in sorted(FIGURES):
        terminalreporter.write_line(f"{name}: {FIGURES[name]}")

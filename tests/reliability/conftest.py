"""Fixtures of the reliability suite: a simulator with a known token, connections with fast retry settings.

Constants and helpers live in :mod:`tests.reliability._support` (tests import from there, never from here).

Every test here that runs the provider against faults also counts what it saw in :data:`FIGURES`;
the session prints them at the end (``pytest tests/reliability -s`` or the terminal summary), so the
issue's closing note can quote them: fault cases, hypothesis examples, bad inputs, false successes,
token leaks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.testing.connections import oes_connection_env_var
from airflow_provider_oes.testing.simulator import OESSimulator
from tests.reliability._support import (
    CONN_ID,
    ENTERPRISE_ID,
    FIGURES,
    TOKEN,
    DripHandler,
    connection_json,
    serve_http,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


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
        monkeypatch.setenv(oes_connection_env_var(CONN_ID), connection_json(host, token, **extras))
        return CONN_ID

    return _set


@pytest.fixture
def sim_conn(sim: OESSimulator, set_conn: Callable[..., str]) -> str:
    """Connection ``oes_default`` pointing at the simulator with the fast extras."""
    return set_conn(sim.url)


@pytest.fixture(scope="module")
def drip_server() -> Iterator[str]:
    """A server that answers 200 at once and then drips its body (see :class:`DripHandler`)."""
    with serve_http(DripHandler) as url:
        yield url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the issue's closing note asks for."""
    if not FIGURES:
        return
    terminalreporter.section("OES reliability figures")
    for name in sorted(FIGURES):
        terminalreporter.write_line(f"{name}: {FIGURES[name]}")

"""
pytest plugin of the OES provider (entry point ``pytest11``: ``oes``).

Fixtures:

* ``oes_simulator_session`` (session): one :class:`~airflow_provider_oes.testing.simulator.OESSimulator`
  started for the whole run.
* ``oes_simulator`` (function): that simulator, reset (no allocations, faults or counts) for each test.
* ``oes_connection`` (function): sets ``AIRFLOW_CONN_OES_DEFAULT`` to point at the simulator and
  returns ``"oes_default"``.

This module is loaded into every pytest run of anyone who installs the provider, so it imports
nothing heavy at module level: FastAPI and uvicorn are imported inside the fixtures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes._constants import DEFAULT_CONN_ID as OES_CONN_ID
from airflow_provider_oes.testing.connections import oes_connection_env_var, oes_connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

OES_CONN_ENV_VAR = oes_connection_env_var(OES_CONN_ID)
"""The variable the ``oes_connection`` fixture sets (see also :mod:`airflow_provider_oes.testing.connections`)."""


@pytest.fixture(scope="session")
def oes_simulator_session() -> Iterator[OESSimulator]:
    """Start one OES simulator on a free 127.0.0.1 port for the whole test session."""
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        yield sim


@pytest.fixture
def oes_simulator(oes_simulator_session: OESSimulator) -> Iterator[OESSimulator]:
    """
    Give a test the session's OES simulator with fresh state (reset before and after the test).

    :param oes_simulator_session: the running session simulator.
    """
    oes_simulator_session.reset()
    yield oes_simulator_session
    oes_simulator_session.reset()


@pytest.fixture
def oes_connection(oes_simulator: OESSimulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """
    Point the Airflow connection ``oes_default`` at the simulator (through an environment variable).

    :param oes_simulator: the simulator to point at.
    :param monkeypatch: pytest's monkeypatch, which restores the environment after the test.
    :return: the connection id, ``"oes_default"``.
    """
    monkeypatch.setenv(
        OES_CONN_ENV_VAR,
        oes_connection_json(oes_simulator.url, oes_simulator.token, enterprise_id=oes_simulator.enterprise_id),
    )
    return OES_CONN_ID

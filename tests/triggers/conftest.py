"""Fixtures for trigger tests: connections to the local simulator with chosen extras."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.testing.connections import oes_connection_env

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator


@pytest.fixture
def make_connection(oes_simulator: OESSimulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Return ``make(conn_id="oes_trig", token=None, **extras)``, which defines an env-var connection to the simulator.

    Retries default to 0 and waits to 0.05 s so that transient-error tests stay fast.

    :param oes_simulator: the running simulator.
    :param monkeypatch: restores the environment afterwards.
    """

    def make(conn_id: str = "oes_trig", token: str | None = None, **extras: Any) -> str:
        # These tests check the id strategies; the change feed has its own tests (test_feed*.py).
        extras.setdefault("poll_strategy", "id_batches" if extras.get("batching", True) else None)
        extra = {"enterprise_id": oes_simulator.enterprise_id, "max_retries": 0, "retry_max_wait": 0.05, **extras}
        token = oes_simulator.token if token is None else token
        for name, value in oes_connection_env(conn_id, host=oes_simulator.url, token=token, **extra).items():
            monkeypatch.setenv(name, value)
        return conn_id

    return make

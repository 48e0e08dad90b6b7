"""The requests-mock base shared by the hook, sensor and operator unit tests: one API, one token, one connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_oes._constants import DEFAULT_CONN_ID, TEST_BASE_URL
from airflow_provider_oes.testing.connections import oes_connection_env
from tests._factories import DEFAULT_ALLOCATION_ID, DEFAULT_ENTERPRISE_ID

if TYPE_CHECKING:
    import pytest
    import requests_mock as rm
    from requests_mock.request import _RequestObjectProxy

BASE = TEST_BASE_URL
TOKEN = "v2x-super-secret-access-token-0123456789"
PREFIX = "/api/network/v1/enterprises"
URL = f"{BASE}{PREFIX}/{DEFAULT_ENTERPRISE_ID}/clients/allocations/{DEFAULT_ALLOCATION_ID}"
"""The single-GET URL of the default allocation under the default enterprise."""


def set_connection(
    monkeypatch: pytest.MonkeyPatch,
    conn_id: str = DEFAULT_CONN_ID,
    *,
    host: str | None = BASE,
    port: int | None = None,
    password: str | None = TOKEN,
    **extras: Any,
) -> str:
    """Define an ``oes`` connection through its ``AIRFLOW_CONN_<ID>`` env var (JSON form); return its id.

    :param extras: The connection's extras (none by default: pass ``enterprise_id=...`` for a default enterprise).
    """
    for name, value in oes_connection_env(conn_id, host=host, token=password, port=port, **extras).items():
        monkeypatch.setenv(name, value)
    return conn_id


def last_request(mocker: rm.Mocker) -> _RequestObjectProxy:
    """The last request requests-mock saw (fails the test if there was none)."""
    request = mocker.last_request
    assert request is not None
    return request

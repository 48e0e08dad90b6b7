"""Build an ``oes`` Airflow connection for tests, the way this provider's own tests do.

Outside a running task Airflow reads connections from ``AIRFLOW_CONN_<ID>`` environment variables (and
secrets backends), not from its database; so a unit test of a DAG's tasks needs no database, only::

    from airflow_provider_oes.testing.connections import oes_connection_env

    def test_my_settlement_task(monkeypatch):
        for name, value in oes_connection_env(host="https://app.bitgo-test.com", token="t", enterprise_id="e1").items():
            monkeypatch.setenv(name, value)
        ...

Against the local simulator, the pytest plugin's ``oes_connection`` fixture does this for you.
Cheap to import: nothing from the provider's HTTP stack is loaded.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_oes._constants import DEFAULT_CONN_ID

__all__ = ["oes_connection_env", "oes_connection_env_var", "oes_connection_json"]


def oes_connection_json(
    host: str | None = None,
    token: str | None = None,
    *,
    port: int | None = None,
    **extras: Any,
) -> str:
    """Return the JSON form of an ``oes`` connection, the value of an ``AIRFLOW_CONN_<ID>`` variable.

    :param host: The API base URL (empty or ``None``: BitGo production), e.g. a simulator's ``url``.
    :param token: The BitGo access token (the connection's Password); ``None`` leaves it unset.
    :param port: The connection's Port field, if any.
    :param extras: Connection extras by name, e.g. ``enterprise_id="e1", max_retries=0``; an extra given as
        ``None`` is left out (so its default applies).
    """
    data: dict[str, Any] = {"conn_type": "oes", "host": host}
    if token is not None:
        data["password"] = token
    if port is not None:
        data["port"] = port
    data["extra"] = {name: value for name, value in extras.items() if value is not None}
    return json.dumps(data)


def oes_connection_env_var(conn_id: str = DEFAULT_CONN_ID) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from (``AIRFLOW_CONN_<ID>``).

    :param conn_id: The Airflow connection id; default ``oes_default``.
    """
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def oes_connection_env(conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> dict[str, str]:
    """Return ``{"AIRFLOW_CONN_<ID>": <JSON>}`` defining an ``oes`` connection; set it with ``monkeypatch.setenv``.

    :param conn_id: The Airflow connection id; default ``oes_default``.
    :param kwargs: Passed to :func:`oes_connection_json` (``host``, ``token``, ``port``, extras).
    """
    return {oes_connection_env_var(conn_id): oes_connection_json(**kwargs)}

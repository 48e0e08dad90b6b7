"""The public test helper :mod:`airflow_provider_oes.testing.connections`: the connection Airflow reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.testing.connections import oes_connection_env, oes_connection_env_var, oes_connection_json

if TYPE_CHECKING:
    import pytest


def test_json_round_trips_through_airflow_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    value = oes_connection_json("https://app.bitgo-test.com", "tok-1", port=8443, enterprise_id="e1", max_retries=0)
    monkeypatch.setenv("AIRFLOW_CONN_OES_HELPER", value)
    settings = OESConnectionSettings.from_connection(BaseHook.get_connection("oes_helper"))
    assert settings.base_url == "https://app.bitgo-test.com:8443"
    assert settings.token == "tok-1"
    assert settings.enterprise_id == "e1"
    assert settings.max_retries == 0


def test_none_leaves_fields_out() -> None:
    data = json.loads(oes_connection_json("https://h.example", None, enterprise_id=None, batching=False))
    assert data == {"conn_type": "oes", "host": "https://h.example", "extra": {"batching": False}}


def test_env_names_the_variable_of_the_connection_id(monkeypatch: pytest.MonkeyPatch) -> None:
    env = oes_connection_env(host="https://h.example", token="t", enterprise_id="e")
    assert list(env) == [oes_connection_env_var(OESHook.default_conn_name)] == ["AIRFLOW_CONN_OES_DEFAULT"]
    other = oes_connection_env("my_oes", host="https://h.example")
    assert list(other) == ["AIRFLOW_CONN_MY_OES"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert OESHook().settings.enterprise_id == "e"


def test_helper_is_cheap_to_import() -> None:
    code = (
        "import sys, airflow_provider_oes.testing.connections\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'httpx', 'pydantic', 'airflow')"
        " or m.startswith('airflow_provider_oes.hooks')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""Unit tests of reading an ``oes`` connection into :class:`OESConnectionSettings`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS

TOKEN = "v2x-super-secret-access-token-0123456789"


def _conn(host: str | None = "https://app.bitgo-test.com", port: int | None = None, **extra: Any) -> Connection:
    return Connection(
        conn_id="oes_test",
        conn_type="oes",
        host=host,
        port=port,
        password=TOKEN,
        extra=json.dumps(extra) if extra else None,
    )


def test_defaults() -> None:
    settings = OESConnectionSettings.from_connection(_conn())
    assert settings.conn_id == "oes_test"
    assert settings.base_url == "https://app.bitgo-test.com"
    assert settings.token == TOKEN
    assert settings.enterprise_id is None
    assert settings.connect_timeout == 10.0
    assert settings.read_timeout == 30.0
    assert settings.ca_bundle is None
    assert settings.verify is True
    assert settings.max_retries == 3
    assert settings.retry_max_wait == 30.0
    assert settings.rate_limit_requests == 360
    assert settings.rate_limit_period == 60.0
    assert settings.batching is True
    assert settings.batch_size == 100


def test_every_extra_read() -> None:
    settings = OESConnectionSettings.from_connection(
        _conn(
            enterprise_id="ent1",
            connect_timeout="2.5",
            read_timeout=7,
            ca_bundle="/etc/ssl/bundle.pem",
            max_retries="0",
            retry_max_wait=1.5,
            rate_limit_requests=10,
            rate_limit_period="30",
            batching="false",
            batch_size="25",
        )
    )
    assert settings.enterprise_id == "ent1"
    assert settings.connect_timeout == 2.5
    assert settings.read_timeout == 7.0
    assert settings.ca_bundle == "/etc/ssl/bundle.pem"
    assert settings.verify == "/etc/ssl/bundle.pem"
    assert settings.max_retries == 0
    assert settings.retry_max_wait == 1.5
    assert settings.rate_limit_requests == 10
    assert settings.rate_limit_period == 30.0
    assert settings.batching is False
    assert settings.batch_size == 25


def test_settings_fields_are_exactly_the_declared_extras() -> None:
    fields = {f.name for f in dataclasses.fields(OESConnectionSettings)}
    assert fields - {"conn_id", "base_url", "token"} == set(EXTRA_FIELDS)


@pytest.mark.parametrize(
    ("raw", "expected"), [(True, True), ("yes", True), ("1", True), ("off", False), (False, False)]
)
def test_boolean_extra(raw: object, expected: bool) -> None:
    assert OESConnectionSettings.from_connection(_conn(batching=raw)).batching is expected


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_blank_extras_use_defaults(blank: object) -> None:
    settings = OESConnectionSettings.from_connection(_conn(enterprise_id=blank, read_timeout=blank))
    assert settings.enterprise_id is None
    assert settings.read_timeout == 30.0


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("read_timeout", "abc"),
        ("connect_timeout", True),
        ("connect_timeout", 0),
        ("read_timeout", -1),
        ("read_timeout", "inf"),
        ("connect_timeout", "nan"),
        ("retry_max_wait", "Infinity"),
        ("rate_limit_period", float("inf")),
        ("max_retries", "1.5"),
        ("max_retries", 2.5),
        ("max_retries", -1),
        ("max_retries", True),
        ("batch_size", 0),
        ("batch_size", "many"),
        ("batching", "maybe"),
        ("rate_limit_requests", 0),
        ("retry_max_wait", [1]),
    ],
)
def test_bad_extras_name_field_and_value(name: str, raw: object) -> None:
    extra: dict[str, Any] = {name: raw}
    with pytest.raises(OESInvalidRequestError) as info:
        OESConnectionSettings.from_connection(_conn(**extra))
    text = str(info.value)
    assert repr(name) in text
    assert repr(raw) in text
    assert TOKEN not in text


def test_extra_not_an_object() -> None:
    conn = Connection(conn_id="oes_test", conn_type="oes", host="app.bitgo.com", password=TOKEN, extra="[1, 2]")
    with pytest.raises(OESInvalidRequestError, match="extra must be a JSON object"):
        OESConnectionSettings.from_connection(conn)


def test_host_and_port() -> None:
    assert OESConnectionSettings.from_connection(_conn("app.bitgo-test.com", 8443)).base_url == (
        "https://app.bitgo-test.com:8443"
    )
    assert OESConnectionSettings.from_connection(_conn("http://127.0.0.1", 5001)).base_url == "http://127.0.0.1:5001"
    assert OESConnectionSettings.from_connection(_conn("http://localhost:5001")).base_url == "http://localhost:5001"
    assert OESConnectionSettings.from_connection(_conn(None)).base_url == "https://app.bitgo.com"


def test_plain_http_refused_for_remote_hosts() -> None:
    with pytest.raises(OESInvalidRequestError, match="plain http"):
        OESConnectionSettings.from_connection(_conn("http://app.bitgo-test.com"))


def test_missing_password_gives_empty_token() -> None:
    conn = Connection(conn_id="oes_test", conn_type="oes", host="app.bitgo.com")
    assert OESConnectionSettings.from_connection(conn).token == ""


def test_repr_hides_token() -> None:
    settings = OESConnectionSettings.from_connection(_conn(enterprise_id="ent1"))
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert "ent1" in repr(settings)

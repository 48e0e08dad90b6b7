"""Unit tests of the proxy rule (:mod:`airflow_provider_oes._proxy`), its validation and its secrecy.

The real proxy (proxy.py on 127.0.0.1) is exercised in ``tests/reliability/test_proxy.py``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests
import requests_mock as rm
import urllib3
from airflow.sdk import Connection

from airflow_provider_oes._errors import transport_error
from airflow_provider_oes._proxy import Proxy, parse_proxy_url, redact_proxy_url, select_proxy
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESPermissionDeniedError,
)
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS, get_provider_info
from airflow_provider_oes.hooks.async_client import OESAsyncClient
from airflow_provider_oes.hooks.oes import OESHook

if TYPE_CHECKING:
    from collections.abc import Callable

TOKEN = "v2x-proxy-unit-access-token-0123456789"
PASSWORD = "s3cret-Proxy-pass-9f8e"
PROXY = f"http://egress:{PASSWORD}@proxy.corp.example:3128"
SHOWN = "http://***@proxy.corp.example:3128"
API = "https://app.bitgo-test.com"
AID = "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables of the machine running the tests."""
    for name in list(os.environ):
        if name.lower() in ENV_NAMES:
            monkeypatch.delenv(name)


def _conn(host: str = API, **extra: Any) -> Connection:
    return Connection(conn_id="oes_px", conn_type="oes", host=host, password=TOKEN, extra=json.dumps(extra))


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def _set(host: str = API, **extra: Any) -> None:
        extra = {"enterprise_id": "ent", "max_retries": 0, **extra}
        value = json.dumps({"conn_type": "oes", "host": host, "password": TOKEN, "extra": extra})
        monkeypatch.setenv("AIRFLOW_CONN_OES_DEFAULT", value)

    return _set


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    ("base_url", "proxy_url", "use_env", "env", "expected"),
    [
        # 1. the connection's proxy carries everything, loopback included, whatever the environment says
        (API, PROXY, True, {"HTTPS_PROXY": "http://env:1"}, PROXY),
        ("https://127.0.0.1:8443", PROXY, True, {}, PROXY),
        ("https://localhost", PROXY, False, {"NO_PROXY": "*"}, PROXY),
        # 2. environment proxies: https_proxy, else all_proxy; lowercase wins; an empty lowercase unsets
        (API, None, True, {"HTTPS_PROXY": "http://env:1"}, "http://env:1"),
        (API, None, True, {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}, "http://lower:1"),
        (API, None, True, {"https_proxy": "", "HTTPS_PROXY": "http://upper:1"}, None),
        (API, None, True, {"ALL_PROXY": "http://all:1"}, "http://all:1"),
        (API, None, True, {"all_proxy": "http://all:1", "HTTPS_PROXY": "http://env:1"}, "http://env:1"),
        (API, None, True, {"HTTP_PROXY": "http://plain-http-only:1"}, None),  # not for an https API
        (API, None, True, {"HTTPS_PROXY": "env:3128"}, "http://env:3128"),  # bare host:port, as both libraries
        (API, None, True, {}, None),
        # ... never for loopback
        ("https://127.0.0.1:8443", None, True, {"HTTPS_PROXY": "http://env:1", "ALL_PROXY": "http://all:1"}, None),
        ("https://127.9.9.9", None, True, {"HTTPS_PROXY": "http://env:1"}, None),
        ("https://[::1]:8443", None, True, {"HTTPS_PROXY": "http://env:1"}, None),
        ("https://localhost:8443", None, True, {"HTTPS_PROXY": "http://env:1"}, None),
        ("http://127.0.0.1:8080", None, True, {"HTTP_PROXY": "http://env:1", "ALL_PROXY": "http://all:1"}, None),
        # ... NO_PROXY honoured
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*"}, None),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "app.bitgo-test.com"}, None),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "internal, bitgo-test.com"}, None),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "no_proxy": ".bitgo-test.com"}, None),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*.bitgo-test.com"}, None),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "APP.BITGO-TEST.COM:443"}, None),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "app.bitgo-test.com:8443"}, "http://env:1"),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "go-test.com"}, "http://env:1"),
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "bitgo.com"}, "http://env:1"),
        ("https://10.1.2.3", None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://10.1.2.3", None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "10.1.2.3"}, None),
        ("https://10.1.2.3", None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "192.168.0.0/16"}, "http://env:1"),
        ("https://[fd00::5]", None, True, {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "fd00::/8"}, None),
        # lowercase no_proxy present (even empty) wins over NO_PROXY
        (API, None, True, {"HTTPS_PROXY": "http://env:1", "no_proxy": "", "NO_PROXY": "*"}, "http://env:1"),
        # 3. trust_env off: the environment is ignored
        (API, None, False, {"HTTPS_PROXY": "http://env:1", "ALL_PROXY": "http://all:1"}, None),
    ],
)
def test_select_proxy_rule(
    base_url: str, proxy_url: str | None, use_env: bool, env: dict[str, str], expected: str | None
) -> None:
    proxy = select_proxy(base_url, proxy_url, use_env, environ=env)
    assert (proxy.url if proxy else None) == expected


def test_select_proxy_names_its_source() -> None:
    assert select_proxy(API, PROXY, True, {}) == Proxy(PROXY, "connection extra 'proxy_url'")
    proxy = select_proxy(API, None, True, {"https_proxy": "http://e:1"})
    assert proxy is not None
    assert proxy.source == "environment variable https_proxy"


def test_select_proxy_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://from-env:3128")
    proxy = select_proxy(API, None, True)
    assert proxy is not None
    assert proxy.url == "http://from-env:3128"


def test_a_bad_environment_proxy_is_an_error_naming_the_variable_without_credentials() -> None:
    with pytest.raises(OESInvalidRequestError) as info:
        select_proxy(API, None, True, {"HTTPS_PROXY": f"socks5://u:{PASSWORD}@socks.corp:1080"})
    message = str(info.value)
    assert "environment variable HTTPS_PROXY" in message
    assert "'socks5://***@socks.corp:1080'" in message
    assert PASSWORD not in message


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "raw",
    [
        "http://proxy:3128",
        "https://proxy.corp.example",
        "HTTP://Proxy:3128/",
        f"http://user:{PASSWORD}@proxy:3128",
        "http://user%40corp:p%3Ass%2Fword@proxy:3128",
        "http://[fd00::1]:3128",
        "  http://proxy:3128  ",
    ],
)
def test_good_proxy_urls(raw: str) -> None:
    assert parse_proxy_url(raw, "x") == raw.strip()


@pytest.mark.parametrize(
    ("raw", "shown", "why"),
    [
        ("proxy.corp:3128", "'proxy.corp:3128'", "scheme"),
        (f"user:{PASSWORD}@proxy.corp:3128", "'***@proxy.corp:3128'", "scheme"),
        (f"socks5://user:{PASSWORD}@proxy:1080", "'socks5://***@proxy:1080'", "scheme 'socks5'"),
        ("ftp://proxy:21", "'ftp://proxy:21'", "scheme 'ftp'"),
        (f"http://user:{PASSWORD}@", "'http://***@'", "no host"),
        ("http://", "'http://'", "no host"),
        (f"http://u:{PASSWORD}@proxy:99999", "'http://***@proxy:99999'", "port"),
        (f"http://u:{PASSWORD}@proxy:port", "'http://***@proxy:port'", "port"),
        ("http://proxy:3128/path", "'http://proxy:3128/path'", "no path"),
        ("http://proxy:3128?x=1", "'http://proxy:3128?x=1'", "no path, query"),
        (f"http://u:{PASSWORD}@proxy:3128#frag", "'http://***@proxy:3128#frag'", "fragment"),
        (f"http://u:{PASSWORD} @proxy:3128", "'http://***@proxy:3128'", "blanks"),
        # a '/' in an unencoded password
        (f"http://u:{PASSWORD}/x@proxy:3128", "'http://***@proxy:3128'", "percent-encode"),
        ("http://[fd00::1:3128", "'http://[fd00::1:3128'", "cannot be read"),
    ],
)
def test_bad_proxy_urls_name_the_value_without_credentials(raw: str, shown: str, why: str) -> None:
    with pytest.raises(OESInvalidRequestError) as info:
        parse_proxy_url(raw, "connection extra 'proxy_url'")
    message = str(info.value)
    assert message.startswith("connection extra 'proxy_url' must be an http:// or https:// proxy URL"), message
    assert f"got {shown}" in message, message
    assert why in message, message
    assert PASSWORD not in message


@pytest.mark.parametrize("raw", [{"https": PROXY}, 3128, ["http://p:1"]])
def test_a_proxy_url_extra_that_is_no_string_is_refused_without_showing_it(raw: object) -> None:
    with pytest.raises(OESInvalidRequestError, match=r"'proxy_url'.*not a string") as info:
        OESConnectionSettings.from_connection(_conn(proxy_url=raw))
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (PROXY, SHOWN),
        ("http://proxy:3128", "http://proxy:3128"),
        ("http://only-user@proxy:1", "http://***@proxy:1"),
        (f"http://u:{PASSWORD}@x@proxy:1", "http://***@proxy:1"),  # the last '@' ends the credentials
        (f"u:{PASSWORD}@proxy:1", "***@proxy:1"),
        (f"http://u:{PASSWORD}/x#y@proxy:1/", "http://***@proxy:1/"),
    ],
)
def test_redact_proxy_url(raw: str, expected: str) -> None:
    assert redact_proxy_url(raw) == expected


def test_proxy_shows_no_credentials_and_lists_its_secrets() -> None:
    proxy = Proxy("http://egress:p%40ss%2Fw0rd-long@proxy:3128", "connection extra 'proxy_url'")
    for text in (repr(proxy), str(proxy), proxy.display):
        assert "p%40ss" not in text
        assert "p@ss" not in text
    assert proxy.display == "http://***@proxy:3128"
    assert repr(proxy) == "Proxy('http://***@proxy:3128', source=\"connection extra 'proxy_url'\")"
    basic = base64.b64encode(b"egress:p@ss/w0rd-long").decode()
    assert proxy.secrets == sorted({"p%40ss%2Fw0rd-long", "p@ss/w0rd-long", basic})
    assert proxy.has_credentials
    assert Proxy("http://proxy:3128", "x").secrets == []
    assert not Proxy("http://proxy:3128", "x").has_credentials


# ----------------------------------------------------------------------------- settings
def test_extras_declared_for_the_form() -> None:
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert fields["proxy_url"]["schema"] == {"type": ["string", "null"]}
    assert fields["trust_env"]["schema"] == {"type": ["boolean", "null"], "default": True}
    assert EXTRA_FIELDS["proxy_url"].label == "Proxy URL"


def test_only_the_proxy_url_is_a_secret_to_airflows_masker() -> None:
    """Airflow hides the value of an extra whose name looks secret ("proxy", "token", ...) in the API and the
    form, where a default shows as "***". The proxy URL may carry credentials and is meant to be hidden;
    no other extra may be, or the form would store "***" as its value."""
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    assert [name for name in EXTRA_FIELDS if should_hide_value_for_key(name)] == ["proxy_url"]


def test_settings_read_the_proxy_extras() -> None:
    settings = OESConnectionSettings.from_connection(_conn(proxy_url=f"  {PROXY} ", trust_env="false"))
    assert settings.proxy_url == PROXY
    assert settings.trust_env is False
    assert settings.proxy == Proxy(PROXY, "connection extra 'proxy_url'")
    defaults = OESConnectionSettings.from_connection(_conn())
    assert (defaults.proxy_url, defaults.trust_env, defaults.proxy) == (None, True, None)
    assert OESConnectionSettings.from_connection(_conn(proxy_url="")).proxy is None


def test_settings_repr_hides_the_proxy_credentials() -> None:
    settings = OESConnectionSettings.from_connection(_conn(proxy_url=PROXY))
    assert PASSWORD not in repr(settings)
    assert TOKEN not in repr(settings)
    assert PASSWORD not in repr(settings.proxy)


def test_a_proxy_needs_an_https_api() -> None:
    """Through a proxy, plain http (allowed for the loopback simulator) would show the token to the proxy."""
    with pytest.raises(OESInvalidRequestError, match="a proxy needs an https:// API URL") as info:
        OESConnectionSettings.from_connection(_conn("http://127.0.0.1:8080", proxy_url=PROXY))
    assert PASSWORD not in str(info.value)
    assert OESConnectionSettings.from_connection(_conn("https://127.0.0.1:8443", proxy_url=PROXY)).proxy is not None


def test_proxy_credentials_are_registered_with_the_secrets_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk.log

    masked: list[Any] = []
    monkeypatch.setattr(airflow.sdk.log, "mask_secret", lambda secret, *a, **k: masked.append(secret))
    OESConnectionSettings.from_connection(_conn(proxy_url=PROXY))
    basic = base64.b64encode(f"egress:{PASSWORD}".encode()).decode()
    assert PASSWORD in masked
    assert basic in masked
    assert TOKEN in masked
    masked.clear()
    monkeypatch.setenv("HTTPS_PROXY", f"http://env-user:env-{PASSWORD}@egress.corp:8080")
    OESConnectionSettings.from_connection(_conn())
    assert f"env-{PASSWORD}" in masked  # an environment proxy's credentials too


def test_proxy_password_redacted_by_airflows_masker() -> None:
    from airflow.sdk._shared.secrets_masker import redact

    OESConnectionSettings.from_connection(_conn(proxy_url=PROXY))
    basic = base64.b64encode(f"egress:{PASSWORD}".encode()).decode()
    line = f"connecting via {PROXY} with Proxy-Authorization: Basic {basic}"
    redacted = str(redact(line))
    assert PASSWORD not in redacted
    assert basic not in redacted


# ----------------------------------------------------------------------------- the clients
def test_hook_session_uses_only_the_rule(set_conn: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """requests' own environment handling is off: the proxies sent are those of the rule, whatever the
    environment says (here requests itself would have bypassed the proxy: NO_PROXY=*)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "*")
    set_conn(proxy_url=PROXY)
    hook = OESHook()
    assert hook.session.trust_env is False
    assert hook.session.proxies == {"https": PROXY, "http": PROXY}
    with rm.Mocker() as mock:
        mock.get(rm.ANY, status_code=404, json={"error": "not found"})
        with pytest.raises(OESError):
            hook.get_allocation(AID)
        assert mock.last_request.proxies == {"https": PROXY, "http": PROXY}


@pytest.mark.parametrize(
    ("env", "extras", "expected"),
    [
        ({"HTTPS_PROXY": "http://env-proxy:3128"}, {}, {"https": "http://env-proxy:3128"}),
        ({"HTTPS_PROXY": "http://env-proxy:3128", "NO_PROXY": "bitgo-test.com"}, {}, {}),
        ({"HTTPS_PROXY": "http://env-proxy:3128"}, {"trust_env": False}, {}),
    ],
)
def test_hook_environment_proxy(
    env: dict[str, str],
    extras: dict[str, Any],
    expected: dict[str, str],
    set_conn: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    set_conn(**extras)
    with rm.Mocker() as mock:
        mock.get(rm.ANY, status_code=404, json={"error": "not found"})
        with pytest.raises(OESError):
            OESHook().get_allocation(AID)
        sent = {k: v for k, v in mock.last_request.proxies.items() if k == "https"}
        assert sent == expected


@pytest.mark.parametrize(
    ("env", "extras", "proxied"),
    [
        ({"HTTPS_PROXY": "http://env-proxy:3128"}, {}, True),
        ({"HTTPS_PROXY": "http://env-proxy:3128", "NO_PROXY": "bitgo-test.com"}, {}, False),
        ({"HTTPS_PROXY": "http://env-proxy:3128"}, {"trust_env": False}, False),
        ({"NO_PROXY": "*"}, {"proxy_url": PROXY}, True),
        ({}, {}, False),
    ],
)
async def test_async_client_uses_only_the_rule(
    env: dict[str, str], extras: dict[str, Any], proxied: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = OESAsyncClient(OESConnectionSettings.from_connection(_conn(**extras)))
    try:
        transport = client._http._transport_for_url(httpx.URL(f"{API}/api/x"))
        assert (transport is not client._http._transport) is proxied
        assert client._http.trust_env is False
    finally:
        await client.aclose()


async def test_a_test_transport_is_not_bypassed_by_a_proxy() -> None:
    """A transport given to the client (tests use httpx.MockTransport) replaces the network, proxy included."""
    mock = httpx.MockTransport(lambda request: httpx.Response(404, json={"error": "not found"}))
    client = OESAsyncClient(OESConnectionSettings.from_connection(_conn(proxy_url=PROXY)), transport=mock)
    try:
        assert client._http._transport_for_url(httpx.URL(f"{API}/api/x")) is mock
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------- error mapping
def _requests_proxy_error(text: str) -> Exception:
    reason = urllib3.exceptions.ProxyError("Unable to connect to proxy", OSError(text))
    return requests.exceptions.ProxyError(urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize("library", ["requests", "httpx"])
@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [
        (407, OESAuthenticationError, False),
        (403, OESPermissionDeniedError, False),
        (400, OESInvalidRequestError, False),
        (502, OESConnectionError, True),
        (503, OESConnectionError, True),
        (429, OESConnectionError, True),
    ],
)
def test_proxy_refusals_follow_the_apis_rules(library: str, status: int, cls: type[OESError], transient: bool) -> None:
    settings = OESConnectionSettings.from_connection(_conn(proxy_url=PROXY))
    text = f"{status} Whatever Reason"
    exc = (
        _requests_proxy_error(f"Tunnel connection failed: {text}") if library == "requests" else httpx.ProxyError(text)
    )
    error = transport_error(exc, settings, timed_out=False, allocation_id=AID, enterprise_id="ent")
    assert type(error) is cls
    assert error.transient is transient
    assert error.status_code == status
    assert f"the proxy {SHOWN} (connection extra 'proxy_url') answered HTTP {status}" in str(error)
    assert PASSWORD not in str(error)


def test_transport_errors_name_the_proxy_in_use() -> None:
    settings = OESConnectionSettings.from_connection(_conn(proxy_url=PROXY))
    refused = requests.exceptions.ProxyError("Unable to connect to proxy [Errno 111] Connection refused")
    error = transport_error(refused, settings, timed_out=False, allocation_id=AID, enterprise_id="ent")
    assert isinstance(error, OESConnectionError)
    assert error.transient
    assert f"through proxy {SHOWN} (connection extra 'proxy_url')" in str(error)
    timeout = transport_error(httpx.ConnectTimeout("x"), settings, timed_out=True, allocation_id=AID, enterprise_id="e")
    assert isinstance(timeout, OESConnectionError)
    assert f"timed out talking to the OES API through proxy {SHOWN}" in str(timeout)


def test_without_a_proxy_a_status_like_text_is_no_proxy_refusal() -> None:
    settings = OESConnectionSettings.from_connection(_conn())
    error = transport_error(httpx.ProxyError("407 x"), settings, timed_out=False, allocation_id=AID, enterprise_id="e")
    assert isinstance(error, OESConnectionError)
    assert "proxy" not in str(error)

"""The private mapping (:mod:`airflow_provider_oes._errors`): HTTP status table, transport/TLS, redaction."""

from __future__ import annotations

import json
import ssl

import pytest

from airflow_provider_oes._errors import (
    ca_bundle_error,
    check_ca_bundle,
    error_from_response,
    is_certificate_error,
    missing_token_error,
    redact_error,
    tls_certificate_error,
    transport_error,
)
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESRateLimitError,
    OESServerError,
)
from tests._factories import DEFAULT_ALLOCATION_ID

ERROR_BODY = json.dumps({"error": "something is off", "name": "SomeErrorName", "requestId": "req-123"}).encode()

STATUS_CLASSES = [
    (400, OESInvalidRequestError, False),
    (401, OESAuthenticationError, False),
    (403, OESPermissionDeniedError, False),
    (404, OESNotFoundError, False),
    (429, OESRateLimitError, True),
    (500, OESServerError, True),
    (502, OESServerError, True),
    (503, OESServerError, True),
    (418, OESError, False),
]


@pytest.mark.parametrize(("status", "cls", "transient"), STATUS_CLASSES)
def test_status_table_with_json_body(status: int, cls: type[OESError], transient: bool) -> None:
    exc = error_from_response(status, ERROR_BODY, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="ent1")
    assert type(exc) is cls
    assert exc.transient is transient
    assert exc.status_code == status
    assert exc.error == "something is off"
    assert exc.name == "SomeErrorName"
    assert exc.request_id == "req-123"
    assert exc.allocation_id == DEFAULT_ALLOCATION_ID
    assert exc.enterprise_id == "ent1"
    text = str(exc)
    assert f"HTTP {status}" in text
    assert DEFAULT_ALLOCATION_ID in text
    assert "'ent1'" in text
    assert "something is off" in text
    assert "SomeErrorName" in text
    assert "req-123" in text


@pytest.mark.parametrize(("status", "cls", "transient"), STATUS_CLASSES)
@pytest.mark.parametrize("body", [b"", b"<html>Bad Gateway</html>", b"[1, 2]", b'"just a string"', b"{"])
def test_status_table_without_json_body(status: int, cls: type[OESError], transient: bool, body: bytes) -> None:
    exc = error_from_response(status, body, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="ent1")
    assert type(exc) is cls
    assert exc.status_code == status
    assert exc.error is None
    assert exc.name is None
    assert exc.request_id is None
    assert DEFAULT_ALLOCATION_ID in str(exc)
    assert "ent1" in str(exc)


def test_message_says_what_to_fix() -> None:
    assert "access token" in str(error_from_response(401, b"", allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e"))
    assert "license" in str(error_from_response(403, b"", allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e"))
    assert "UUID" in str(error_from_response(400, b"", allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e"))


def test_list_subject_when_no_allocation() -> None:
    exc = error_from_response(500, b"", enterprise_id="ent1")
    assert "the allocations list" in str(exc)
    assert exc.allocation_id is None


def test_error_text_is_cut_short() -> None:
    body = json.dumps({"error": "x" * 10_000}).encode()
    exc = error_from_response(400, body, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")
    assert exc.error is not None
    assert len(exc.error) == 500
    assert len(str(exc)) < 1000


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), (" 1.5 ", 1.5), (None, None), ("soon", None), ("-3", None)]
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    exc = error_from_response(429, b"", retry_after=header, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")
    assert isinstance(exc, OESRateLimitError)
    assert exc.retry_after == expected


SECRET = "tok-0123456789abcdef"


def test_redact_error_strips_the_token_from_every_text_in_place() -> None:
    exc = OESNotFoundError(
        f"server said: Bearer {SECRET}", error=f"echo {SECRET}", name="N", request_id=SECRET, allocation_id="a"
    )
    assert redact_error(exc, SECRET) is exc
    texts = [str(exc), repr(exc), *map(str, exc.args), *(str(v) for v in vars(exc).values())]
    assert all(SECRET not in t for t in texts), texts
    assert "Bearer ***" in str(exc)
    assert exc.error == "echo ***"
    assert exc.name == "N"


def test_redact_error_without_a_secret_changes_nothing() -> None:
    exc = OESServerError("boom ***", error="e")
    assert redact_error(exc, "") is exc
    assert redact_error(exc, None) is exc
    assert str(exc) == "boom ***"


def _settings(**overrides: object) -> OESConnectionSettings:
    values: dict[str, object] = {"conn_id": "c", "base_url": "https://oes.example.test", "token": SECRET}
    values.update(overrides)
    return OESConnectionSettings(**values)  # type: ignore[arg-type]


def test_transport_timeout_is_transient_and_names_the_timeouts() -> None:
    exc = transport_error(
        TimeoutError(f"url with {SECRET}"),
        _settings(connect_timeout=2.0, read_timeout=7.0),
        timed_out=True,
        allocation_id=DEFAULT_ALLOCATION_ID,
        enterprise_id="ent1",
    )
    assert type(exc) is OESConnectionError
    assert exc.transient
    assert "2.0/7.0 s" in str(exc)
    assert DEFAULT_ALLOCATION_ID in str(exc)
    assert SECRET not in str(exc)  # only the class name of the library's error is quoted


def test_transport_drop_names_the_base_url_and_the_list_subject() -> None:
    exc = transport_error(
        ConnectionResetError("reset"), _settings(), timed_out=False, allocation_id=None, enterprise_id="ent1"
    )
    assert type(exc) is OESConnectionError
    assert "https://oes.example.test" in str(exc)
    assert "the allocations list of enterprise 'ent1'" in str(exc)
    assert "ConnectionResetError" in str(exc)


def test_transport_certificate_failure_is_a_setting_to_fix() -> None:
    cause = ssl.SSLCertVerificationError("certificate verify failed")
    wrapped = OSError("outer")
    wrapped.__cause__ = cause
    assert is_certificate_error(wrapped)
    assert not is_certificate_error(OSError("no"))
    exc = transport_error(wrapped, _settings(), timed_out=False, allocation_id=None, enterprise_id="e")
    assert type(exc) is OESInvalidRequestError
    assert not exc.transient
    assert "ca_bundle" in str(exc)
    assert str(exc) == str(tls_certificate_error("https://oes.example.test"))


def test_transport_with_an_unreadable_ca_bundle_names_the_bundle() -> None:
    missing = "/no/such/bundle.pem"
    exc = transport_error(
        ssl.SSLError("x"), _settings(ca_bundle=missing), timed_out=False, allocation_id=None, enterprise_id="e"
    )
    assert type(exc) is OESInvalidRequestError
    assert missing in str(exc)
    assert check_ca_bundle(missing) is not None
    assert str(exc) == str(ca_bundle_error(missing, FileNotFoundError()))


def test_missing_token_error_says_where_the_token_goes() -> None:
    exc = missing_token_error("my_conn", allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")
    assert type(exc) is OESAuthenticationError
    assert "'my_conn'" in str(exc)
    assert "Password" in str(exc)
    assert exc.allocation_id == DEFAULT_ALLOCATION_ID

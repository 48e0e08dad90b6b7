"""Unit tests of :class:`OESHook` against requests-mock (no network, no DB)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import requests
import requests_mock as rm

from airflow_provider_oes._api import MAX_RESPONSE_BYTES
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESRateLimitError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.hooks.oes import USER_AGENT, OESHook
from airflow_provider_oes.models import Allocation, AllocationStatus
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body
from tests._mock_api import BASE, PREFIX, TOKEN, URL, last_request, set_connection

ERROR_JSON = {"error": "nope", "name": "SomeName", "requestId": "req-42"}


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, enterprise_id="ent1", max_retries=3, retry_max_wait=5)


def test_env_var_connection_default_conn_id(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="cleared"))
    hook = OESHook()
    assert hook.oes_conn_id == "oes_default"
    allocation = hook.get_allocation(DEFAULT_ALLOCATION_ID)
    assert isinstance(allocation, Allocation)
    assert allocation.status is AllocationStatus.CLEARED
    assert requests_mock.call_count == 1


def test_request_shape(conn: str, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests replaces verify=True with these env bundles; without them the default trust store is used.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    requests_mock.get(URL, json=allocation_body())
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    request = last_request(requests_mock)
    assert request.method == "GET"
    assert request.url == URL
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.timeout == (10.0, 30.0)
    assert request.verify is True
    assert request.body is None


def test_timeouts_and_ca_bundle_from_extras(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    # The connection's CA bundle must win over REQUESTS_CA_BUNDLE in the environment (psf/requests#3829).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    set_connection(monkeypatch, enterprise_id="ent1", connect_timeout="2.5", read_timeout=7, ca_bundle="/tmp/ca.pem")
    requests_mock.get(URL, json=allocation_body())
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert last_request(requests_mock).timeout == (2.5, 7.0)
    assert last_request(requests_mock).verify == "/tmp/ca.pem"


def test_every_field_through_the_hook(conn: str, requests_mock: rm.Mocker) -> None:
    quantity = "123456789012345678901234567890123456789012345"
    body = allocation_body(
        status="cleared",
        amount={"currency": "ofcteth", "quantity": quantity},
        evaluationId="ev-1",
        pendingApprovalId="pa-1",
        policyResult="approved",
        brandNewField={"a": 1},
    )
    requests_mock.get(URL, text=json.dumps(body))
    allocation = OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert allocation.amount.quantity == quantity
    assert allocation.evaluation_id == "ev-1"
    assert allocation.pending_approval_id == "pa-1"
    assert allocation.policy_result == "approved"
    assert allocation.to_json_dict() == body["allocation"]
    assert Allocation.from_json_dict(json.loads(json.dumps(allocation.to_json_dict()))) == allocation


def test_unknown_status_through_the_hook(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="pending_review"))
    allocation = OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert allocation.status == "pending_review"
    assert not allocation.is_cleared
    assert not allocation.has_known_status


def test_explicit_enterprise_overrides_connection(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(requests_mock_any := rm.ANY, json=allocation_body())
    assert requests_mock_any is rm.ANY
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID, "other-ent")
    assert last_request(requests_mock).path == f"{PREFIX}/other-ent/clients/allocations/{DEFAULT_ALLOCATION_ID}"


@pytest.mark.parametrize(
    ("enterprise_id", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("%2F", "%252F"),
        ("q?x", "q%3Fx"),
        ("h#f", "h%23f"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("...", "..."),
        ("a;b=c", "a%3Bb%3Dc"),
    ],
)
def test_enterprise_id_sent_as_one_encoded_segment(
    conn: str, requests_mock: rm.Mocker, enterprise_id: str, segment: str
) -> None:
    requests_mock.get(rm.ANY, json=allocation_body())
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID, enterprise_id)
    request = last_request(requests_mock)
    expected_path = f"{PREFIX}/{segment}/clients/allocations/{DEFAULT_ALLOCATION_ID}"
    assert request.url == f"{BASE}{expected_path}"
    assert request.query == ""
    assert "#" not in request.url


@pytest.mark.parametrize(
    "allocation_id", ["not-a-uuid", "", DEFAULT_ALLOCATION_ID + "/..", f"../{DEFAULT_ALLOCATION_ID}", None]
)
def test_bad_allocation_id_sends_nothing(conn: str, requests_mock: rm.Mocker, allocation_id: Any) -> None:
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError, match="allocation_id must be a UUID") as info:
        OESHook().get_allocation(allocation_id)
    assert repr(allocation_id) in str(info.value)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("enterprise_id", ["", ".", "..", " ", "ent 1", "ent\t1", "ent\x00", "x" * 129])
def test_bad_enterprise_id_sends_nothing(conn: str, requests_mock: rm.Mocker, enterprise_id: str) -> None:
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError, match="enterprise_id") as info:
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID, enterprise_id)
    assert repr(enterprise_id)[:60] in str(info.value)
    assert requests_mock.call_count == 0


def test_missing_enterprise_id(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, "oes_noent")
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError, match="no enterprise id") as info:
        OESHook("oes_noent").get_allocation(DEFAULT_ALLOCATION_ID)
    assert "'oes_noent'" in str(info.value)
    assert "enterprise_id" in str(info.value)
    assert requests_mock.call_count == 0


def test_missing_token_sends_nothing(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, "oes_notoken", password=None, enterprise_id="ent1")
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESAuthenticationError, match="no access token"):
        OESHook("oes_notoken").get_allocation(DEFAULT_ALLOCATION_ID)
    assert requests_mock.call_count == 0


STATUSES = [
    (400, OESInvalidRequestError),
    (401, OESAuthenticationError),
    (403, OESPermissionDeniedError),
    (404, OESNotFoundError),
    (418, OESError),
]


@pytest.mark.parametrize(("status", "cls"), STATUSES)
@pytest.mark.parametrize("with_json", [True, False])
def test_permanent_errors_raise_at_once(
    conn: str, requests_mock: rm.Mocker, no_sleep: list[float], status: int, cls: type[OESError], with_json: bool
) -> None:
    if with_json:
        requests_mock.get(URL, status_code=status, json=ERROR_JSON)
    else:
        requests_mock.get(URL, status_code=status, text="<html>teapot</html>")
    with pytest.raises(cls) as info:
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    exc = info.value
    assert type(exc) is cls
    assert exc.status_code == status
    assert exc.allocation_id == DEFAULT_ALLOCATION_ID
    assert exc.enterprise_id == "ent1"
    text = str(exc)
    assert DEFAULT_ALLOCATION_ID in text
    assert "ent1" in text
    assert TOKEN not in text
    if with_json:
        assert exc.request_id == "req-42"
        assert exc.name == "SomeName"
        assert "req-42" in text
    else:
        assert exc.request_id is None
    assert requests_mock.call_count == 1
    assert no_sleep == []


@pytest.mark.parametrize(
    ("status", "cls"), [(500, OESServerError), (502, OESServerError), (503, OESServerError), (429, OESRateLimitError)]
)
@pytest.mark.parametrize("with_json", [True, False])
def test_transient_errors_retried_then_raised(
    conn: str, requests_mock: rm.Mocker, no_sleep: list[float], status: int, cls: type[OESError], with_json: bool
) -> None:
    if with_json:
        requests_mock.get(URL, status_code=status, json=ERROR_JSON)
    else:
        requests_mock.get(URL, status_code=status, text="")
    with pytest.raises(cls) as info:
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert info.value.status_code == status
    assert DEFAULT_ALLOCATION_ID in str(info.value)
    assert TOKEN not in str(info.value)
    assert requests_mock.call_count == 4  # first try + max_retries=3
    assert len(no_sleep) == 3
    assert all(0 < s <= 5 for s in no_sleep)


def test_transient_then_success(conn: str, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    requests_mock.get(
        URL,
        [
            {"status_code": 503, "text": "busy"},
            {"status_code": 502, "json": ERROR_JSON},
            {"status_code": 200, "json": allocation_body(status="cleared")},
        ],
    )
    assert OESHook().get_allocation(DEFAULT_ALLOCATION_ID).is_cleared
    assert requests_mock.call_count == 3
    assert len(no_sleep) == 2


def test_retry_after_honoured_and_capped(conn: str, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    requests_mock.get(
        URL,
        [
            {"status_code": 429, "headers": {"Retry-After": "2"}, "json": ERROR_JSON},
            {"status_code": 429, "headers": {"Retry-After": "3600"}, "json": ERROR_JSON},
            {"status_code": 200, "json": allocation_body()},
        ],
    )
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert no_sleep == [2.0, 5.0]  # retry_max_wait=5 caps the second one


def test_max_retries_zero(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    set_connection(monkeypatch, enterprise_id="ent1", max_retries=0)
    requests_mock.get(URL, status_code=500)
    with pytest.raises(OESServerError):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert requests_mock.call_count == 1
    assert no_sleep == []


@pytest.mark.parametrize(
    "exc",
    [requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError],
)
def test_timeouts_and_dropped_connections(
    conn: str, requests_mock: rm.Mocker, no_sleep: list[float], exc: type[Exception]
) -> None:
    requests_mock.get(URL, exc=exc)
    with pytest.raises(OESConnectionError) as info:
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert DEFAULT_ALLOCATION_ID in str(info.value)
    assert "ent1" in str(info.value)
    assert TOKEN not in str(info.value)
    assert info.value.__cause__ is None  # the requests exception (which may carry headers) is not chained
    assert requests_mock.call_count == 4


def test_timeout_then_success(conn: str, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    requests_mock.get(URL, [{"exc": requests.exceptions.ReadTimeout}, {"json": allocation_body(status="released")}])
    assert OESHook().get_allocation(DEFAULT_ALLOCATION_ID).is_released
    assert requests_mock.call_count == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "<html>not json</html>"},
        {"json": {"allocation": None}},
        {"json": allocation_body(status=...)},
        {"json": allocation_body(amount={"currency": "ofctbtc", "quantity": 12.5})},
        {"json": allocation_body(id="b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", status="cleared")},
    ],
)
def test_bad_bodies_raise_response_error_without_retry(
    conn: str, requests_mock: rm.Mocker, no_sleep: list[float], kwargs: dict[str, Any]
) -> None:
    requests_mock.get(URL, **kwargs)
    with pytest.raises(OESResponseError):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert requests_mock.call_count == 1


def test_oversized_body_refused(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, content=b" " * (MAX_RESPONSE_BYTES + 10))
    with pytest.raises(OESResponseError, match="byte limit"):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    requests_mock.get(URL, content=b"{}", headers={"Content-Length": str(MAX_RESPONSE_BYTES + 1)})
    with pytest.raises(OESResponseError, match="declares"):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)


def test_truncated_body_is_a_connection_error(conn: str, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    requests_mock.get(URL, content=b'{"allocation":', headers={"Content-Length": "500"})
    with pytest.raises(OESConnectionError):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)


def test_small_gzip_error_body_is_complete(conn: str, requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    # A tiny gzip body is longer on the wire than decoded: it must not be taken for a dropped connection.
    body = gzip.compress(json.dumps({"error": "Not found"}).encode())
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(body))}
    requests_mock.get(rm.ANY, status_code=404, content=body, headers=headers)
    with pytest.raises(OESNotFoundError) as info:
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert info.value.error == "Not found"
    assert requests_mock.call_count == 1
    ok, message = OESHook().test_connection()
    assert ok is True, message


def test_gzip_allocation_body(conn: str, requests_mock: rm.Mocker) -> None:
    body = gzip.compress(json.dumps(allocation_body(status="cleared")).encode())
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(body))}
    requests_mock.get(URL, content=body, headers=headers)
    assert OESHook().get_allocation(DEFAULT_ALLOCATION_ID).is_cleared


def test_redirect_not_followed(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, status_code=302, headers={"Location": "https://evil.example.com/steal"})
    requests_mock.get("https://evil.example.com/steal", json=allocation_body())
    with pytest.raises(OESError, match="HTTP 302"):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert requests_mock.call_count == 1


def test_one_session_reused(conn: str, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[requests.Session] = []
    real_session = requests.Session

    class CountingSession(real_session):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            created.append(self)

    monkeypatch.setattr(requests, "Session", CountingSession)
    requests_mock.get(URL, json=allocation_body())
    hook = OESHook()
    for _ in range(3):
        hook.get_allocation(DEFAULT_ALLOCATION_ID)
    assert len(created) == 1
    assert hook.session is created[0]
    assert hook.get_conn() is hook.session
    assert requests_mock.call_count == 3

    hook.close()
    hook.get_allocation(DEFAULT_ALLOCATION_ID)
    assert len(created) == 2  # close() drops the session; the next call opens a new one


def test_token_registered_with_masker(conn: str, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk.log

    masked: list[Any] = []
    monkeypatch.setattr(airflow.sdk.log, "mask_secret", lambda secret, *a, **k: masked.append(secret))
    requests_mock.get(URL, json=allocation_body())
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    # Airflow itself only masks the extras of an env-var connection; the token is masked by the hook.
    assert [m for m in masked if m == TOKEN] == [TOKEN]


def test_token_redacted_by_airflow_masker(conn: str) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    hook = OESHook()
    assert hook.settings.token == TOKEN
    assert TOKEN not in str(redact(f"Authorization: Bearer {TOKEN}"))


def test_repr_and_logs_hide_token(conn: str, requests_mock: rm.Mocker, capsys: pytest.CaptureFixture[str]) -> None:
    requests_mock.get(URL, status_code=401, json=ERROR_JSON)
    hook = OESHook()
    with pytest.raises(OESAuthenticationError) as info:
        hook.get_allocation(DEFAULT_ALLOCATION_ID)
    assert TOKEN not in repr(hook)
    assert repr(hook) == "OESHook(oes_conn_id='oes_default')"
    assert TOKEN not in repr(hook.settings)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    out = capsys.readouterr()
    assert TOKEN not in out.out
    assert TOKEN not in out.err


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("http://127.0.0.1", 5001, "http://127.0.0.1:5001"),
        ("http://localhost:5002", None, "http://localhost:5002"),
        ("app.bitgo-test.com", 8443, "https://app.bitgo-test.com:8443"),
        (None, None, "https://app.bitgo.com"),
    ],
)
def test_host_and_port(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, host: str | None, port: int | None, url: str
) -> None:
    set_connection(monkeypatch, host=host, port=port, enterprise_id="ent1")
    requests_mock.get(rm.ANY, json=allocation_body())
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert last_request(requests_mock).url == f"{url}{PREFIX}/ent1/clients/allocations/{DEFAULT_ALLOCATION_ID}"


def test_plain_http_refused_for_remote_host(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, host="http://app.bitgo-test.com", enterprise_id="ent1")
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError, match="plain http"):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert requests_mock.call_count == 0


def test_bad_extra_names_field_and_value(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, enterprise_id="ent1", read_timeout="abc")
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError) as info:
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    assert "'read_timeout'" in str(info.value)
    assert "'abc'" in str(info.value)
    assert requests_mock.call_count == 0


def test_test_connection_ok_on_404(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, status_code=404, json={"error": "not found"})
    ok, message = OESHook().test_connection()
    assert ok is True
    assert "ent1" in message
    assert BASE in message
    assert requests_mock.call_count == 1
    path = last_request(requests_mock).path
    assert path.startswith(f"{PREFIX}/ent1/clients/allocations/")
    assert last_request(requests_mock).headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(("status", "needle"), [(401, "access token"), (403, "license"), (500, "HTTP 500")])
def test_test_connection_fails(conn: str, requests_mock: rm.Mocker, status: int, needle: str) -> None:
    requests_mock.get(rm.ANY, status_code=status, json=ERROR_JSON)
    ok, message = OESHook().test_connection()
    assert ok is False
    assert needle in message
    assert f"HTTP {status}" in message
    assert TOKEN not in message
    assert requests_mock.call_count == 1  # no retries in the UI test
    probe_id = last_request(requests_mock).path.rsplit("/", 1)[-1]
    assert probe_id not in message.lower()  # the random probe id would only puzzle the user
    assert "for a test request of enterprise 'ent1'" in message


def test_test_connection_without_enterprise(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, "oes_noent")
    requests_mock.get(rm.ANY, status_code=404)
    ok, message = OESHook("oes_noent").test_connection()
    assert ok is False
    assert "no enterprise id" in message
    assert requests_mock.call_count == 0


def test_test_connection_connection_error(conn: str, requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, exc=requests.exceptions.ConnectionError)
    ok, message = OESHook().test_connection()
    assert ok is False
    assert "no complete answer" in message
    assert BASE in message


def test_test_connection_bad_extra(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    set_connection(monkeypatch, enterprise_id="ent1", read_timeout="abc")
    ok, message = OESHook().test_connection()
    assert ok is False
    assert "read_timeout" in message
    assert requests_mock.call_count == 0

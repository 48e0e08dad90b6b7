"""The access token never leaks, and it only travels over TLS (or to the loopback simulator).

A known token is used for every connection; every error path is driven (each simulator fault, each HTTP
error, validation errors, ``test_connection``, a hostile server that echoes the token back) and all
captured stdout/stderr, log records, exception texts and payloads, reprs, XCom values and rendered
template fields are scanned for it. ``test_faults.py`` scans its own paths the same way.
"""

from __future__ import annotations

import json
import logging
import pickle
import ssl
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests_mock
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_oes._api import normalize_base_url
from airflow_provider_oes.exceptions import (
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
)
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.operators.allocation import GetAllocationOperator
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.testing.simulator import FAULT_KINDS, UNLICENSED_ENTERPRISE_ID
from airflow_provider_oes.triggers._events import error_from_payload, error_to_payload
from tests._factories import minimal_record
from tests.reliability._support import FIGURES, TOKEN, QuietHandler, assert_no_token, self_signed_cert, serve_http

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from airflow_provider_oes.testing.simulator import OESSimulator

HOST = "https://oes.example.test"
AID = "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"


def _xcom(result: Any) -> dict[str, Any]:
    """The XCom value of a finished poke, checked to be the allocation's JSON object."""
    value = result.xcom_value
    assert isinstance(value, dict)
    return value


def _record(**overrides: Any) -> dict[str, Any]:
    return minimal_record(**{"id": AID, "status": "cleared", **overrides})


def _outputs(
    exc: BaseException | None, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> list[Any]:
    captured = capfd.readouterr()
    items: list[Any] = [captured.out, captured.err, caplog.text]
    if exc is not None:
        items.append(exc)
        if isinstance(exc, OESError):
            payload = error_to_payload(exc)
            items += [json.dumps(payload), error_from_payload(payload), pickle.loads(pickle.dumps(exc))]
    return items


@pytest.fixture(autouse=True)
def _debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG for everything (urllib3 logs each request line at DEBUG): more output to scan."""
    caplog.set_level(logging.DEBUG)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_simulator_fault_with_hook_sensor_operator_and_test_connection(
    kind: str,
    sim: OESSimulator,
    sim_conn: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each fault, through every entry point, leaves no trace of the token anywhere."""
    aid = sim.add_allocation(final_status="cleared")
    extra: dict[str, Any] = {"delay": 0.6} if kind == "slow" else {}
    results: list[Any] = []
    for run in (
        lambda: OESHook().get_allocation(aid),
        lambda: AllocationStatusSensor(task_id="s", allocation_id=aid).poke({}),
        lambda: GetAllocationOperator(task_id="g", allocation_id=aid).execute({}),
        lambda: OESHook().test_connection(),
    ):
        sim.inject_fault(kind, count=3, **extra)
        try:
            results.append(run())
            error = None
        except OESError as exc:
            error = exc
        sim.clear_faults()
        assert_no_token(*_outputs(error, capfd, caplog))
    assert_no_token(*(json.dumps(r, default=repr) for r in results))
    FIGURES["secret scans: error paths driven"] += 4


@pytest.mark.parametrize("case", ["401", "403", "404", "refused"])
def test_http_errors_and_test_connection(
    case: str,
    sim: OESSimulator,
    set_conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 (the known token is the one refused), 403, 404, nothing listening: no token anywhere."""
    url, extras = sim.url, {}
    if case == "refused":
        url = "http://127.0.0.1:9"
    if case == "403":
        extras["enterprise_id"] = UNLICENSED_ENTERPRISE_ID
    set_conn(url, **extras)
    if case == "401":
        sim._state.token = "another-token-the-server-wants"
    try:
        ok, message = OESHook().test_connection()
        assert ok is (case == "404")
        assert_no_token(message)
        # A refused connection is transient (the sensor would keep waiting), so ask the hook directly.
        task: Callable[[], Any] = (
            (lambda: OESHook().get_allocation(str(uuid.uuid4())))
            if case == "refused"
            else (lambda: AllocationStatusSensor(task_id="s", allocation_id=str(uuid.uuid4())).poke({}))
        )
        with pytest.raises(OESError) as info:
            task()
    finally:
        sim._state.token = TOKEN
    assert_no_token(*_outputs(info.value, capfd, caplog))
    if case == "refused":
        assert isinstance(info.value, OESConnectionError)
    FIGURES["secret scans: error paths driven"] += 2


ECHOES: dict[str, dict[str, Any]] = {
    "401 echoing the header": {"status_code": 401, "json": {"error": f"Bad token: Bearer {TOKEN}", "name": TOKEN}},
    "500 echoing the token": {"status_code": 500, "json": {"error": f"crash {TOKEN}", "requestId": TOKEN}},
    "429 echoing the token": {"status_code": 429, "json": {"error": TOKEN}},
    "non-JSON debug page": {"status_code": 200, "text": f"Authorization: Bearer {TOKEN}"},
    "record with the token as id": {"status_code": 200, "json": {"allocation": _record(id=TOKEN)}},
    "record with the token as quantity": {
        "status_code": 200,
        "json": {"allocation": _record(amount={"currency": "x", "quantity": TOKEN})},
    },
    "record with the token as status": {"status_code": 200, "json": {"allocation": _record(status=TOKEN)}},
    "no allocation object": {"status_code": 200, "json": {TOKEN: TOKEN}},
}


@pytest.mark.parametrize("name", list(ECHOES))
def test_a_server_echoing_the_token_does_not_make_us_leak_it(
    name: str,
    set_conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever the server puts in its answer, our errors and logs do not repeat the token."""
    set_conn(HOST, max_retries=0)
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, **ECHOES[name])
        sensor = AllocationStatusSensor(task_id="s", allocation_id=AID)
        error = None
        try:
            sensor.poke({})
        except OESError as exc:
            error = exc
        _ok, message = OESHook().test_connection()
    assert_no_token(message, *_outputs(error, capfd, caplog))
    FIGURES["secret scans: error paths driven"] += 2


def test_reprs_xcom_and_rendered_fields(
    sim: OESSimulator, sim_conn: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Hook, settings and task reprs, the XCom value and rendered fields of a successful run."""
    aid = sim.add_allocation(final_status="cleared")
    sensor = AllocationStatusSensor(task_id="s", allocation_id="{{ params.aid }}", enterprise_id="{{ params.eid }}")
    sensor.render_template_fields({"params": {"aid": aid, "eid": sim.enterprise_id}})
    result = sensor.poke({})
    assert result.is_done
    assert _xcom(result)["id"] == aid
    operator = GetAllocationOperator(task_id="g", allocation_id=aid)
    xcom = operator.execute({})
    hook = OESHook()
    assert hook.settings.token == TOKEN  # the token is really there to leak
    rendered = {name: getattr(sensor, name) for name in sensor.template_fields}
    assert_no_token(
        repr(hook),
        str(hook),
        repr(hook.settings),
        str(hook.settings),
        repr(sensor),
        repr(operator),
        repr(sensor.hook),
        json.dumps(result.xcom_value),
        json.dumps(xcom),
        json.dumps(rendered),
        *_outputs(None, capfd, caplog),
    )


# ----------------------------------------------------------------------------- transport rules
@pytest.mark.parametrize(
    "host",
    [
        "http://example.com",
        "http://app.bitgo.com",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.evil.test",
        "http://localhost.evil.test",
        "http://[::ffff:10.0.0.1]",
        "http://0.0.0.0",
        "ftp://127.0.0.1",
        "file:///etc/passwd",
        "https://user:pass@app.bitgo.com",
        "http://127.0.0.1@evil.test",
        "https://app.bitgo.com?x=1",
    ],
)
def test_insecure_or_odd_hosts_are_refused(host: str, set_conn: Callable[..., str]) -> None:
    """Plain http to anything but loopback (and credentials/query in the host) is refused, no request sent."""
    set_conn(host)
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, json={"allocation": _record()})
        with pytest.raises(OESInvalidRequestError) as info:
            OESHook().get_allocation(AID)
        assert mock.call_count == 0
    assert "host" in str(info.value)
    assert_no_token(info.value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("http://127.0.0.2", "http://127.0.0.2"),
        ("app.bitgo-test.com", "https://app.bitgo-test.com"),
        ("https://app.bitgo.com/", "https://app.bitgo.com"),
        ("", "https://app.bitgo.com"),
    ],
)
def test_https_and_loopback_http_are_accepted(host: str, expected: str) -> None:
    assert normalize_base_url(host) == expected


def test_plain_http_error_says_what_to_do() -> None:
    with pytest.raises(OESInvalidRequestError, match=r"plain http.*Use https://"):
        normalize_base_url("http://oes.example.test")


@settings(max_examples=500, deadline=None)
@given(
    host=st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda scheme, body: scheme + body,
            st.sampled_from(["http://", "HTTP://", "https://", "", "//", "http:/", "http:\\\\"]),
            st.text(alphabet="127.0.1localhstevi@:[]%/\\?#.x- \t", max_size=40),
        ),
    )
)
def test_any_accepted_http_url_is_loopback_to_urllib3_too(host: str) -> None:
    """No parser differential: whatever plain-http base URL is accepted, urllib3 (which sends it) sees loopback."""
    import ipaddress

    from urllib3.util import parse_url

    FIGURES["hosts tried (transport property)"] += 1
    try:
        url = normalize_base_url(host)
    except OESInvalidRequestError:
        return
    except ValueError as exc:  # pragma: no cover - would be a bug: an unexpected error type
        pytest.fail(f"normalize_base_url({host!r}) raised {exc!r}")
    assert url.startswith(("https://", "http://"))
    if url.startswith("http://"):
        parsed = parse_url(url + "/api")
        hostname = (parsed.host or "").strip("[]")
        assert hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback, (host, url)


def test_tls_verification_is_on_by_default_and_ca_bundle_reaches_requests(
    set_conn: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default: verify=True reaches requests; with the extra: the CA bundle path, even over REQUESTS_CA_BUNDLE."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not used by requests-mock")
    for extras, expected in (({}, True), ({"ca_bundle": str(bundle)}, str(bundle))):
        set_conn(HOST, **extras)
        hook = OESHook()
        with requests_mock.Mocker() as mock:
            mock.get(requests_mock.ANY, json={"allocation": _record()})
            hook.get_allocation(AID)
            assert mock.last_request.verify == expected
        assert hook.session.verify == expected
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/ca.pem")
    hook = OESHook()
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, json={"allocation": _record()})
        hook.get_allocation(AID)
        assert mock.last_request.verify == str(bundle)


def test_redirects_are_not_followed(set_conn: Callable[..., str]) -> None:
    """A 302 to another host must not carry the token there."""
    set_conn(HOST, max_retries=0)
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, status_code=302, headers={"Location": "https://evil.test/steal"})
        with pytest.raises(OESError) as info:
            OESHook().get_allocation(AID)
        assert [r.hostname for r in mock.request_history] == ["oes.example.test"]
    assert "302" in str(info.value)


# ----------------------------------------------------------------------------- real TLS on 127.0.0.1
@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate; yields (url, path of the cert)."""
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    body = json.dumps({"allocation": _record()}).encode()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve_http(Handler, tls=context) as url:
        yield url, cert


def test_real_tls_self_signed_is_refused_without_ca_bundle_and_accepted_with_it(
    tls_server: tuple[str, str], set_conn: Callable[..., str], capfd: pytest.CaptureFixture[str]
) -> None:
    """An unverifiable certificate is a setting to fix: a permanent error naming ``ca_bundle``, no retries,
    and the sensor fails at once instead of waiting for its timeout. With the CA bundle set it works."""
    url, cert = tls_server
    set_conn(url, max_retries=3)
    with pytest.raises(OESInvalidRequestError, match="ca_bundle") as info:
        OESHook().get_allocation(AID)
    assert not info.value.transient
    with pytest.raises(OESInvalidRequestError, match="could not be verified"):
        AllocationStatusSensor(task_id="s", allocation_id=AID).poke({})
    assert_no_token(info.value, capfd.readouterr().out)
    set_conn(url, max_retries=0, ca_bundle=cert)
    assert OESHook().get_allocation(AID).id == AID


async def test_real_tls_through_the_trigger(tls_server: tuple[str, str], set_conn: Callable[..., str]) -> None:
    """The trigger's async client follows the same rule: an error event naming ``ca_bundle``, then success
    with the bundle (single GET, batching off, since the test server answers every path with one record)."""
    import asyncio

    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
    from tests.triggers._support import wait_idle

    url, cert = tls_server

    async def first_event() -> dict[str, Any]:
        trigger = AllocationStatusTrigger(AID, "ent", poll_interval=0.05)
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("no event")

    set_conn(url, max_retries=3, batching=False)
    event = await asyncio.wait_for(first_event(), 10)
    assert event["status"] == "error"
    assert event["error_type"] == "OESInvalidRequestError"
    assert "ca_bundle" in event["message"]
    # The first trigger's shared poller (and its client, built without the bundle) stops in the background;
    # since Python 3.12 it may not have yet, and the next trigger would join it.
    await wait_idle()
    set_conn(url, max_retries=0, batching=False, ca_bundle=cert)
    event = await asyncio.wait_for(first_event(), 10)
    assert event["status"] == "terminal"
    assert event["allocation"]["id"] == AID


@pytest.mark.parametrize("kind", ["missing", "not PEM"])
async def test_a_bad_ca_bundle_is_a_clear_permanent_error_for_hook_sensor_and_trigger(
    kind: str, tls_server: tuple[str, str], set_conn: Callable[..., str], tmp_path: Path
) -> None:
    """A CA bundle that cannot be loaded names the extra and fails at once (it was a bare OSError in the
    hook and a crash of the trigger)."""
    import asyncio

    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

    url, _ = tls_server
    path = tmp_path / "ca.pem"
    if kind == "not PEM":
        path.write_text("this is not a certificate")
    set_conn(url, max_retries=3, batching=False, ca_bundle=str(path))
    with pytest.raises(OESInvalidRequestError, match="'ca_bundle'") as info:
        OESHook().get_allocation(AID)
    assert str(path) in str(info.value)
    with pytest.raises(OESInvalidRequestError, match="'ca_bundle'"):
        AllocationStatusSensor(task_id="s", allocation_id=AID).poke({})

    async def first_event() -> dict[str, Any]:
        async for event in AllocationStatusTrigger(AID, "ent", poll_interval=0.05).run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("no event")

    event = await asyncio.wait_for(first_event(), 10)
    assert event["status"] == "error"
    assert event["error_type"] == "OESInvalidRequestError"
    assert "'ca_bundle'" in event["message"]

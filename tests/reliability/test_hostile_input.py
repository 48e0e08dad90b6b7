"""Hostile ids and hostile response bodies.

Ids: every generated allocation id and enterprise id is either refused locally with
``OESInvalidRequestError`` naming the value (and no request is sent), or produces a request whose path is
exactly the single-allocation endpoint with the enterprise id as one percent-encoded segment. The same
holds for ids that arrive through the sensor's templated fields, checked after rendering.

Bodies: oversized, endless, compressed-bomb and deeply nested answers are refused with
``OESResponseError`` instead of being parsed forever.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pytest
import requests_mock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_oes._api import MAX_RESPONSE_BYTES
from airflow_provider_oes.exceptions import OESInvalidRequestError, OESResponseError, OESServerError
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from tests._factories import minimal_record
from tests.reliability._support import FIGURES, QuietHandler, connection_json, serve_http

if TYPE_CHECKING:
    from collections.abc import Iterator

HOST = "https://oes.example.test"
PREFIX_SEGMENTS = ["", "api", "network", "v1", "enterprises"]
DEFAULT_ENTERPRISE = "default-enterprise"
VALID_ALLOCATION = "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
UNRESERVED_OR_ESCAPE = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+")

HOSTILE_PIECES = [
    "/",
    "..",
    ".",
    "%2F",
    "%2f",
    "%2E%2E",
    "?",
    "#",
    "&",
    "=",
    ";",
    "@",
    ":",
    "+",
    "%",
    "%00",
    "\\",
    "\x00",
    "\n",
    "\r",
    "\t",
    " ",
    "\u00a0",
    "\u2028",
    "\u202e",
    "\ufeff",
    "é",
    "日本",
    "🙂",
    "\ud7ff",
    "a" * 200,
    "../admin",
    "x/../../y",
    "%252F",
    "{{ 7*7 }}",
    "' OR 1=1 --",
    "<script>",
]

hostile_text = st.one_of(
    st.just(""),
    st.sampled_from(HOSTILE_PIECES),
    st.lists(st.sampled_from([*HOSTILE_PIECES, "a", "b", "1", "-", "_"]), min_size=1, max_size=8).map("".join),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "/", "%", "é", " "]), st.integers(5_000, 10_240)),
    st.uuids()
    .map(str)
    .flatmap(
        lambda u: st.sampled_from([u, u.upper(), f" {u}", f"{u}\n", f"{u}/", f"{u}?x=1", f"{u}#f", u.replace("-", "")])
    ),
)


def _answer(request: Any, context: Any) -> dict[str, Any]:
    context.status_code = 200
    last = urlsplit(request.url).path.rsplit("/", 1)[-1]
    return {"allocation": minimal_record(id=unquote(last))}


@pytest.fixture(scope="module", autouse=True)
def _connection() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "AIRFLOW_CONN_OES_DEFAULT",
            connection_json(HOST, enterprise_id=DEFAULT_ENTERPRISE, max_retries=0, retry_max_wait=0),
        )
        yield


@pytest.fixture(scope="module")
def hook() -> Iterator[OESHook]:
    hook = OESHook()
    yield hook
    hook.close()


def _check_path(url: str, enterprise_id: str, allocation_id: str) -> None:
    """The request went to exactly the single-allocation endpoint; the enterprise id is one segment."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == HOST
    assert parts.query == ""
    assert parts.fragment == ""
    segments = parts.path.split("/")
    assert segments[:5] == PREFIX_SEGMENTS
    assert len(segments) == 9, f"path has {len(segments)} segments: {parts.path!r}"
    assert segments[6:8] == ["clients", "allocations"]
    assert UNRESERVED_OR_ESCAPE.fullmatch(segments[5]), segments[5]
    assert unquote(segments[5], errors="strict") == enterprise_id
    assert segments[8] == allocation_id


def _check_rejected(exc: OESInvalidRequestError, value: object) -> None:
    """The error names the bad value (cut short for long ones) and stays readable."""
    shown = repr(value)
    assert shown[:60] in str(exc), f"{str(exc)[:200]!r} does not name {shown[:60]!r}"
    assert len(str(exc)) < 500


def _try(sensor_or_hook: Any, enterprise_id: Any, allocation_id: Any) -> None:
    """Run one lookup; assert it was refused locally (no request) or went to exactly the right path."""
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, json=_answer)
        try:
            if isinstance(sensor_or_hook, OESHook):
                sensor_or_hook.get_allocation(allocation_id, enterprise_id)
            else:
                sensor_or_hook.poke({})
        except OESInvalidRequestError as exc:
            FIGURES["bad inputs rejected locally"] += 1
            assert mock.call_count == 0, "a request was sent for an id that was refused"
            bad = allocation_id if _is_bad_allocation(allocation_id) else enterprise_id
            _check_rejected(exc, bad)
            return
        FIGURES["hostile inputs sent safely encoded"] += 1
        assert mock.call_count == 1
        _check_path(mock.request_history[0].url, enterprise_id or DEFAULT_ENTERPRISE, allocation_id)


def _is_bad_allocation(value: Any) -> bool:
    return not (isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enterprise_id=hostile_text)
def test_hostile_enterprise_ids(hook: OESHook, enterprise_id: str) -> None:
    """Every enterprise id is refused naming it, or sent as one percent-encoded path segment."""
    FIGURES["bad inputs tried (hypothesis)"] += 1
    _try(hook, enterprise_id, VALID_ALLOCATION)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allocation_id=hostile_text, enterprise_id=st.one_of(st.none(), hostile_text))
def test_hostile_allocation_ids(hook: OESHook, allocation_id: str, enterprise_id: str | None) -> None:
    """Every allocation id that is not a canonical UUID is refused, naming it, with no request sent."""
    FIGURES["bad inputs tried (hypothesis)"] += 1
    _try(hook, enterprise_id, allocation_id)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allocation_id=hostile_text, enterprise_id=hostile_text)
def test_hostile_templated_ids_are_checked_after_rendering(allocation_id: str, enterprise_id: str) -> None:
    """Ids coming from Jinja params get the same checks once the sensor's fields are rendered."""
    FIGURES["bad inputs tried (hypothesis)"] += 1
    sensor = AllocationStatusSensor(task_id="wait", allocation_id="{{ params.aid }}", enterprise_id="{{ params.eid }}")
    sensor.render_template_fields({"params": {"aid": allocation_id, "eid": enterprise_id}})
    assert sensor.allocation_id == allocation_id
    assert sensor.enterprise_id == enterprise_id
    _try(sensor, enterprise_id, allocation_id)
    sensor.hook.close()


@pytest.mark.parametrize("value", [None, 123, b"a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", ["x"], {"id": 1}, 1.5])
def test_non_string_ids_are_refused(hook: OESHook, value: Any) -> None:
    """Non-strings (a template rendered to a native object, a typo in a DAG) are refused, named."""
    FIGURES["bad inputs tried (fixed)"] += 2
    _try(hook, DEFAULT_ENTERPRISE, value)
    if value is not None:  # None means "use the connection's default enterprise"
        _try(hook, value, VALID_ALLOCATION)


# ----------------------------------------------------------------------------- hostile bodies
HUGE = b'{"allocation": {"notes": "' + b"x" * (MAX_RESPONSE_BYTES + 10) + b'"}}'
BODIES: dict[str, tuple[int, dict[str, Any], type[Exception], str]] = {
    "oversized, no Content-Length": (200, {"content": HUGE}, OESResponseError, "limit"),
    "oversized, declared": (
        200,
        {"content": HUGE, "headers": {"Content-Length": str(len(HUGE))}},
        OESResponseError,
        "limit",
    ),
    "100,000 '['": (200, {"content": b"[" * 100_000}, OESResponseError, "nested too deeply"),
    "100,000 '{\"a\":'": (200, {"content": b'{"a":' * 100_000}, OESResponseError, "nested too deeply"),
    "nested allocation": (200, {"content": b'{"allocation":' * 50_000}, OESResponseError, "nested too deeply"),
    "huge integer": (200, {"content": b'{"allocation": ' + b"9" * 500_000 + b"}"}, OESResponseError, "not JSON"),
    "error body 100,000 '['": (503, {"content": b"[" * 100_000}, OESServerError, "HTTP 503"),
    "error body oversized": (500, {"content": b"{" + b" " * (4 * MAX_RESPONSE_BYTES)}, OESServerError, "HTTP 500"),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_hostile_bodies_are_refused(hook: OESHook, name: str) -> None:
    """Oversized and deeply nested bodies end in a clear error, not a hang or a crash."""
    status, kwargs, error_cls, words = BODIES[name]
    FIGURES["hostile bodies refused"] += 1
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, status_code=status, **kwargs)
        with pytest.raises(error_cls) as info:
            hook.get_allocation(VALID_ALLOCATION, DEFAULT_ENTERPRISE)
    assert words in str(info.value)
    assert len(str(info.value)) < 1000


class _BombHandler(QuietHandler):
    """Serves hostile bodies over real HTTP: a gzip bomb, and an endless stream."""

    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=9)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "bomb" in self.path:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(self.bomb)))
            self.end_headers()
            self.wfile.write(self.bomb)
            return
        self.end_headers()  # no length: an endless body, until the client hangs up
        chunk = b"[" * 65536
        try:
            for _ in range(1024):  # 64 MiB at most
                self.wfile.write(chunk)
        except OSError:
            pass


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[str]:
    with serve_http(_BombHandler) as url:
        yield url


@pytest.mark.parametrize("kind", ["bomb", "endless"])
def test_bodies_over_real_http_are_cut_off(bomb_server: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64 KiB gzip that inflates to 64 MiB, and an endless body: refused once past the limit."""
    FIGURES["hostile bodies refused"] += 1
    enterprise = kind  # the handler picks its behaviour from the path
    monkeypatch.setenv("AIRFLOW_CONN_OES_DEFAULT", connection_json(bomb_server, max_retries=0, read_timeout=5))
    hook = OESHook()
    with pytest.raises(OESResponseError, match="limit"):
        hook.get_allocation(str(uuid.uuid4()), enterprise)
    hook.close()


def test_hostile_path_inputs_are_counted() -> None:
    """Guard: the generated-input figures above are real (this file ran its examples)."""
    assert FIGURES["bad inputs tried (hypothesis)"] >= 2000
    assert FIGURES["bad inputs rejected locally"] > 0
    assert FIGURES["hostile inputs sent safely encoded"] > 0
    print(f"\nhostile input figures: { {k: v for k, v in FIGURES.items() if 'input' in k} }")
    json.dumps(dict(FIGURES))

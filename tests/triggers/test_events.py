"""The trigger-event contract (:mod:`airflow_provider_oes.triggers._events`): build, serialize, read, check."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_oes.exceptions import (
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESRateLimitError,
    OESResponseError,
)
from airflow_provider_oes.models import Allocation
from airflow_provider_oes.triggers._events import (
    ERROR,
    TERMINAL,
    error_event,
    error_from_payload,
    error_to_payload,
    read_event,
    terminal_event,
)
from tests._factories import ALL_ERROR_CLASSES, DEFAULT_ALLOCATION_ID, allocation_record, full_error

OTHER_ID = "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"


def _allocation(**overrides: Any) -> Allocation:
    return Allocation.from_json_dict(allocation_record(**overrides))


def _read(event: object) -> Allocation:
    return read_event(event, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="ent1")


# ----------------------------------------------------------------------------- building


def test_terminal_event_is_plain_json_with_the_api_shape() -> None:
    allocation = _allocation(status="cleared", amount={"currency": "ofctbtc", "quantity": "12345678901234567890123"})
    event = terminal_event(allocation, "ent1")
    assert event == {"status": TERMINAL, "allocation": allocation.to_json_dict(), "enterprise_id": "ent1"}
    assert json.loads(json.dumps(event)) == event
    assert event["allocation"]["amount"]["quantity"] == "12345678901234567890123"


def test_error_event_names_the_allocation_waited_for_when_the_error_does_not() -> None:
    event = error_event(OESInvalidRequestError("bad setting"), DEFAULT_ALLOCATION_ID)
    assert event["status"] == ERROR
    assert event["error_type"] == "OESInvalidRequestError"
    assert event["allocation_id"] == DEFAULT_ALLOCATION_ID
    own = error_event(OESNotFoundError("gone", allocation_id=OTHER_ID), DEFAULT_ALLOCATION_ID)
    assert own["allocation_id"] == OTHER_ID  # the error's own id wins
    assert json.loads(json.dumps(own)) == own


@pytest.mark.parametrize("cls", ALL_ERROR_CLASSES)
def test_payload_round_trip(cls: type[OESError]) -> None:
    exc = full_error(cls)
    payload = error_to_payload(exc)
    assert json.loads(json.dumps(payload)) == payload
    assert payload["error_type"] == cls.__name__
    again = error_from_payload(json.loads(json.dumps(payload)))
    assert type(again) is cls
    assert str(again) == str(exc)
    for attr in ("status_code", "error", "name", "request_id", "allocation_id", "enterprise_id"):
        assert getattr(again, attr) == getattr(exc, attr)


def test_payload_of_unknown_type_becomes_base_error() -> None:
    again = error_from_payload({"error_type": "NotAClass", "message": "weird"})
    assert type(again) is OESError
    assert str(again) == "weird"
    assert str(error_from_payload({})) == "the OES trigger reported an error"
    # Only the public OESError tree may be named: a non-error name of the module is not a class to build.
    assert type(error_from_payload({"error_type": "AllocationReleasedError", "message": "m"})) is OESError


# ----------------------------------------------------------------------------- reading and checking


@pytest.mark.parametrize("status", ["cleared", "released"])
def test_read_returns_the_final_allocation(status: str) -> None:
    allocation = _allocation(status=status)
    assert _read(json.loads(json.dumps(terminal_event(allocation, "ent1")))) == allocation


def test_read_raises_the_error_of_an_error_event() -> None:
    sent = OESRateLimitError("slow down", status_code=429, request_id="r-1", allocation_id=DEFAULT_ALLOCATION_ID)
    with pytest.raises(OESRateLimitError, match="slow down") as info:
        _read(json.loads(json.dumps(error_event(sent))))
    assert info.value.request_id == "r-1"
    with pytest.raises(OESConnectionError):
        _read(error_event(OESConnectionError("timed out")))


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (None, "no event"),
        ({}, "no event"),
        ("terminal", "unknown kind"),
        ([{"status": "terminal"}], "unknown kind"),
        ({"status": "cleared", "allocation": allocation_record(status="cleared")}, "unknown kind 'cleared'"),
        ({"status": "success"}, "unknown kind"),
        ({"status": "terminal"}, "not a valid allocation"),
        ({"status": "terminal", "allocation": "x"}, "not a valid allocation"),
        ({"status": "terminal", "allocation": allocation_record(status="cleared", id=OTHER_ID)}, "refusing"),
        ({"status": "terminal", "allocation": allocation_record(status="reserved")}, "fired while it is"),
        ({"status": "terminal", "allocation": allocation_record(status="pending_review")}, "fired while it is"),
    ],
)
def test_read_never_trusts_a_malformed_event_as_success(event: object, needle: str) -> None:
    with pytest.raises(OESResponseError, match=needle):
        _read(event)


def test_read_takes_the_enterprise_from_the_event_for_messages() -> None:
    event = {
        "status": "terminal",
        "allocation": allocation_record(status="cleared", id=OTHER_ID),
        "enterprise_id": "e9",
    }
    with pytest.raises(OESResponseError) as info:
        _read(event)
    assert info.value.enterprise_id == "e9"
    assert info.value.allocation_id == DEFAULT_ALLOCATION_ID


def test_events_module_is_cheap_to_import() -> None:
    """The sensor imports it at resume time: beyond Airflow's own exceptions it loads no client, model or hook."""
    code = (
        "import sys, airflow.sdk.exceptions\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_oes.triggers._events\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('requests', 'httpx', 'pydantic', 'tenacity') or m in "
        "('airflow_provider_oes.models', 'airflow_provider_oes._api', 'airflow_provider_oes.hooks.oes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

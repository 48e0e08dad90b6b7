"""Unit tests of the public error tree: hierarchy, messages, pickling."""

from __future__ import annotations

import json
import pickle

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_oes.exceptions import (
    AllocationReleasedError,
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESRateLimitError,
    OESResponseError,
    OESServerError,
    error_from_response,
)
from airflow_provider_oes.models import Allocation
from tests._factories import ALL_ERROR_CLASSES, DEFAULT_ALLOCATION_ID, allocation_record, full_error

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


def test_hierarchy() -> None:
    for cls in (
        OESInvalidRequestError,
        OESAuthenticationError,
        OESPermissionDeniedError,
        OESNotFoundError,
        OESRateLimitError,
        OESServerError,
        OESConnectionError,
        OESResponseError,
    ):
        assert issubclass(cls, OESError)
    assert issubclass(OESError, AirflowException)
    assert issubclass(AllocationReleasedError, AirflowFailException)
    assert OESConnectionError.transient
    assert not OESResponseError.transient


@pytest.mark.parametrize("cls", ALL_ERROR_CLASSES)
def test_pickle_round_trip(cls: type[OESError]) -> None:
    exc = full_error(cls)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls
    assert str(again) == str(exc)
    assert again.message == exc.message
    for attr in ("status_code", "error", "name", "request_id", "allocation_id", "enterprise_id"):
        assert getattr(again, attr) == getattr(exc, attr)
    if cls is OESRateLimitError:
        assert again.retry_after == 2.5  # type: ignore[attr-defined]


def _released(reason: str | None = "insufficient balance") -> Allocation:
    return Allocation.from_json_dict(
        allocation_record(status="released", reason=reason, amount={"currency": "ofctbtc", "quantity": "4200"})
    )


def test_released_error_message_and_allocation() -> None:
    allocation = _released()
    exc = AllocationReleasedError(allocation)
    assert exc.allocation is allocation
    text = str(exc)
    assert DEFAULT_ALLOCATION_ID in text
    assert "allocation" in text
    assert "4200 ofctbtc" in text
    assert "insufficient balance" in text
    assert "none given" in str(AllocationReleasedError(_released(None)))


def test_released_error_pickles() -> None:
    exc = AllocationReleasedError(_released())
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is AllocationReleasedError
    assert str(again) == str(exc)
    assert again.allocation == exc.allocation

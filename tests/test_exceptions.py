"""Unit tests of the public error tree: hierarchy, messages, pickling."""

from __future__ import annotations

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
)
from airflow_provider_oes.models import Allocation
from tests._factories import ALL_ERROR_CLASSES, DEFAULT_ALLOCATION_ID, allocation_record, full_error


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


@pytest.mark.parametrize(
    ("cls", "fails_without_retries"),
    [
        (OESInvalidRequestError, True),  # 400 / local validation: the request will not become valid by waiting
        (OESPermissionDeniedError, True),  # 403: a missing OES licence or token scope
        (OESNotFoundError, True),  # 404: no such allocation for this client
        (AllocationReleasedError, True),
        (OESAuthenticationError, False),  # 401: the next try reads the connection again (token rotation)
        (OESRateLimitError, False),
        (OESServerError, False),
        (OESConnectionError, False),
        (OESResponseError, False),
    ],
)
def test_which_errors_skip_airflow_retries(cls: type[Exception], fails_without_retries: bool) -> None:
    # Airflow fails a task without using its retries exactly when the error is an AirflowFailException.
    assert issubclass(cls, AirflowFailException) is fails_without_retries
    assert issubclass(cls, AirflowException)


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

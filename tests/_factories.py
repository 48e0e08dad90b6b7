"""Builders for unit tests: valid OES allocation JSON records (the API's camelCase shape) and full errors."""

from __future__ import annotations

from typing import Any

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

DEFAULT_ALLOCATION_ID = "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
DEFAULT_ENTERPRISE_ID = "ent1"


def allocation_record(**overrides: Any) -> dict[str, Any]:
    """Return a valid allocation record (status ``reserved``); ``overrides`` replace or add top-level keys.

    An override whose value is ``...`` (Ellipsis) removes that key, to build records without a field.

    :param overrides: camelCase keys of the API record.
    """
    record: dict[str, Any] = {
        "id": DEFAULT_ALLOCATION_ID,
        "amount": {"currency": "ofctbtc", "quantity": "100000000"},
        "connectionId": "c0ffee00-0000-4000-8000-000000000001",
        "clientExternalId": "client-ext-1",
        "partnerExternalId": "partner-ext-1",
        "initiatedBy": "user-1",
        "notes": "unit test allocation",
        "createdAt": "2025-11-01T10:00:00.000Z",
        "updatedAt": "2025-11-01T10:05:00.000Z",
        "retriable": False,
        "reason": "waiting for the partner",
        "status": "reserved",
        "type": "allocation",
    }
    for key, value in overrides.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def minimal_record(**overrides: Any) -> dict[str, Any]:
    """Return :func:`allocation_record` without its optional fields (``partnerExternalId``, ``notes``, ``reason``).

    :param overrides: camelCase keys of the API record, replacing or adding top-level keys.
    """
    return allocation_record(**{"partnerExternalId": ..., "notes": ..., "reason": ..., **overrides})


def allocation_body(**overrides: Any) -> dict[str, Any]:
    """Return a single-allocation response body ``{"allocation": allocation_record(**overrides)}``.

    :param overrides: passed to :func:`allocation_record`.
    """
    return {"allocation": allocation_record(**overrides)}


def full_error(cls: type[OESError]) -> OESError:
    """An error of class ``cls`` with every field set (a rate-limit error also has ``retry_after``)."""
    kwargs: dict[str, object] = {
        "status_code": 503,
        "error": "err",
        "name": "Name",
        "request_id": "req-1",
        "allocation_id": DEFAULT_ALLOCATION_ID,
        "enterprise_id": "ent1",
    }
    if cls is OESRateLimitError:
        return OESRateLimitError("rate limited", retry_after=2.5, **kwargs)
    return cls("boom message", **kwargs)  # type: ignore[arg-type]


ALL_ERROR_CLASSES: list[type[OESError]] = [
    OESError,
    OESInvalidRequestError,
    OESAuthenticationError,
    OESPermissionDeniedError,
    OESNotFoundError,
    OESRateLimitError,
    OESServerError,
    OESConnectionError,
    OESResponseError,
]

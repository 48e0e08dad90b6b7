"""Builders of valid OES allocation JSON records, in the API's own camelCase shape, for unit tests."""

from __future__ import annotations

from typing import Any

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


def allocation_body(**overrides: Any) -> dict[str, Any]:
    """Return a single-allocation response body ``{"allocation": allocation_record(**overrides)}``.

    :param overrides: passed to :func:`allocation_record`.
    """
    return {"allocation": allocation_record(**overrides)}

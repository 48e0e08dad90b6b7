"""The trigger-event contract: what a trigger sends the sensor, how it is built, read and checked.

Two plain-JSON shapes, ``terminal`` (the final allocation) and ``error`` (a permanent error), built by
:func:`terminal_event` and :func:`error_event`, read by :func:`read_event` in the sensor: only these two
kinds are trusted, the allocation is parsed again, must be the one asked for and must be final. Cheap to
import. The shapes in full: ``docs/internals/events.rst``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_oes import exceptions
from airflow_provider_oes.exceptions import OESError, OESResponseError

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation

__all__ = [
    "ERROR",
    "TERMINAL",
    "error_event",
    "error_from_payload",
    "error_to_payload",
    "read_event",
    "terminal_event",
]

TERMINAL = "terminal"
"""``status`` of the event of an allocation that reached ``cleared`` or ``released``."""
ERROR = "error"
"""``status`` of the event of a permanent error."""

_ERROR_CLASSES: dict[str, type[OESError]] = {
    name: cls
    for name in exceptions.__all__
    if isinstance(cls := getattr(exceptions, name), type) and issubclass(cls, OESError)
}
"""The error types an event may name: exactly the public OESError tree (anything else becomes OESError)."""


def terminal_event(allocation: Allocation, enterprise_id: str) -> dict[str, Any]:
    """The event payload for an allocation that reached a final status.

    :param allocation: The final allocation, sent in the API's own JSON shape (amounts stay exact strings).
    :param enterprise_id: The enterprise it was polled under.
    """
    return {"status": TERMINAL, "allocation": allocation.to_json_dict(), "enterprise_id": enterprise_id}


def error_to_payload(exc: OESError) -> dict[str, Any]:
    """Describe an :class:`~airflow_provider_oes.exceptions.OESError` as plain JSON (the fields of an error event).

    :param exc: The error; its message is already free of the access token (the clients redact it).
    """
    return {
        "error_type": type(exc).__name__,
        "message": exc.message,
        "status_code": exc.status_code,
        "error": exc.error,
        "name": exc.name,
        "request_id": exc.request_id,
        "allocation_id": exc.allocation_id,
        "enterprise_id": exc.enterprise_id,
    }


def error_event(exc: OESError, allocation_id: str | None = None) -> dict[str, Any]:
    """The event payload for a permanent error.

    :param exc: The error to report.
    :param allocation_id: The allocation waited for, named when the error itself does not name one.
    """
    payload = {"status": ERROR, **error_to_payload(exc)}
    if payload.get("allocation_id") is None and allocation_id is not None:
        payload["allocation_id"] = allocation_id
    return payload


def error_from_payload(payload: dict[str, Any]) -> OESError:
    """Rebuild the error described by :func:`error_to_payload` (unknown types become ``OESError``).

    :param payload: An error event, or the output of :func:`error_to_payload`.
    """
    cls = _ERROR_CLASSES.get(str(payload.get("error_type")), OESError)
    return cls(
        str(payload.get("message") or "the OES trigger reported an error"),
        status_code=payload.get("status_code"),
        error=payload.get("error"),
        name=payload.get("name"),
        request_id=payload.get("request_id"),
        allocation_id=payload.get("allocation_id"),
        enterprise_id=payload.get("enterprise_id"),
    )


def read_event(event: object, *, allocation_id: str, enterprise_id: str | None) -> Allocation:
    """Check an event that came back from the trigger; return the final allocation it carries.

    :param event: The event payload as the sensor received it.
    :param allocation_id: The allocation the sensor waits for: the event's allocation must be this one.
    :param enterprise_id: The sensor's enterprise id, used when the event does not name one.
    :raises OESError: the error an error event describes.
    :raises OESResponseError: for no event, an event of another kind, an allocation that is not valid,
        another allocation, or one that is not final. A malformed event never becomes success.
    """
    if not event:
        raise OESResponseError(f"the trigger for allocation {allocation_id!r} returned no event")
    kind = event.get("status") if isinstance(event, dict) else None
    if kind == ERROR:
        assert isinstance(event, dict)
        raise error_from_payload(event)
    if kind != TERMINAL or not isinstance(event, dict):
        raise OESResponseError(
            f"the trigger for allocation {allocation_id!r} sent an event of unknown kind "
            f"{str(kind)[:40]!r}; not trusted as success"
        )
    from airflow_provider_oes._api import parse_allocation_record

    allocation = parse_allocation_record(
        event.get("allocation"),
        allocation_id=allocation_id,
        enterprise_id=str(event.get("enterprise_id") or enterprise_id or ""),
    )
    if not allocation.is_terminal:
        # A trigger only fires on a final status; anything else is not trusted as success.
        raise OESResponseError(f"the trigger for allocation {allocation_id!r} fired while it is {allocation.status!r}")
    return allocation

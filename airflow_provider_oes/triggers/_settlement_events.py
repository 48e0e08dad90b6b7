"""The settlement trigger's event contract: what it sends the sensor, how it is built, read and checked.

Two plain-JSON shapes: ``settled`` (the settlement with its transfers and disputes, in the API's shape, once it
is ``completed`` or ``rejected``, or ``failed`` for a sensor that fails fast) and the ``error`` event of
:mod:`airflow_provider_oes.triggers._events`. :func:`read_settlement_event` trusts only these, parses the
settlement again, and checks that it is the one asked for and in a status the trigger may report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_oes.exceptions import OESResponseError
from airflow_provider_oes.triggers._events import ERROR, error_from_payload

if TYPE_CHECKING:
    from airflow_provider_oes.settlement_models import SettlementDetails

__all__ = ["SETTLED", "read_settlement_event", "settled_event"]

SETTLED = "settled"
"""``status`` of the event of a settlement that reached a status the sensor acts on."""


def settled_event(details: SettlementDetails, enterprise_id: str) -> dict[str, Any]:
    """The event payload for a settlement that is final (or ``failed``, for a sensor that fails fast).

    :param details: The settlement with its transfers and disputes (amounts stay exact strings).
    :param enterprise_id: The enterprise it was polled under.
    """
    return {"status": SETTLED, "settlement": details.to_json_dict(), "enterprise_id": enterprise_id}


def read_settlement_event(
    event: object, *, settlement_id: str, enterprise_id: str | None, fail_on_failed: bool
) -> SettlementDetails:
    """Check an event that came back from the trigger; return the settlement it carries.

    :param event: The event payload as the sensor received it.
    :param settlement_id: The settlement the sensor waits for: the event's must be this one.
    :param enterprise_id: The sensor's enterprise id, named in errors.
    :param fail_on_failed: Whether a ``failed`` settlement is an outcome for this sensor.
    :raises OESError: the error an error event describes.
    :raises OESResponseError: for no event, an event of another kind, a settlement that is not valid, another
        settlement, or one in a status the trigger does not report. A malformed event never becomes success.
    """
    from pydantic import ValidationError

    from airflow_provider_oes.settlement_models import SettlementDetails

    what = f"the trigger for settlement {settlement_id!r}"
    if not event:
        raise OESResponseError(f"{what} returned no event", enterprise_id=enterprise_id)
    kind = event.get("status") if isinstance(event, dict) else None
    if kind == ERROR and isinstance(event, dict):
        raise error_from_payload(event)
    if kind != SETTLED or not isinstance(event, dict):
        raise OESResponseError(
            f"{what} sent an event of unknown kind {str(kind)[:40]!r}; not trusted as success",
            enterprise_id=enterprise_id,
        )
    try:
        details = SettlementDetails.model_validate(event.get("settlement"))
    except ValidationError as exc:
        raise OESResponseError(
            f"{what} sent a settlement that is not valid ({exc.error_count()} problem(s)); not trusted as success",
            enterprise_id=enterprise_id,
        ) from None
    settlement = details.settlement
    if settlement.id.lower() != settlement_id.lower():
        raise OESResponseError(
            f"{what} sent settlement {settlement.id!r}; not trusted as success", enterprise_id=enterprise_id
        )
    if not (settlement.is_final or (fail_on_failed and settlement.is_failed)):
        raise OESResponseError(
            f"{what} sent it in status {str(settlement.status)[:40]!r}, which is not final; not trusted as success",
            enterprise_id=enterprise_id,
        )
    return details

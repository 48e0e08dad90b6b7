"""What the settlement watcher emits: settlements keyed by (id, status, updatedAt), filtered by status and partner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._settlement_api import parse_record
from airflow_provider_oes.models import SETTLEMENTS_PAYLOAD_KEY
from airflow_provider_oes.settlement_models import ListedSettlement
from airflow_provider_oes.triggers._watching.resource import WatchedResource

if TYPE_CHECKING:
    from collections.abc import Callable

WINDOW_END_FIELD = "disputeWindowEndsAt"
"""The field the watcher adds to each emitted settlement: when its client dispute window closes (or null)."""


def status_text(settlement: ListedSettlement) -> str:
    """The settlement's status as the API's text."""
    return str(getattr(settlement.status, "value", settlement.status))


@dataclass(frozen=True)
class SettlementQuery:
    """The settlement watcher's filters.

    :param statuses: The statuses emitted (``pending``, ``failed``, ``completed``, ``rejected``).
    :param partner_ids: Only settlements of these partners (lower-case); ``None``: all.
    """

    statuses: tuple[str, ...]
    partner_ids: tuple[str, ...] | None = None

    def matches(self, settlement: WatchedSettlement) -> bool:
        """True when the settlement is in one of the statuses and (if set) of one of the partners."""
        if settlement.status not in self.statuses:
            return False
        return self.partner_ids is None or settlement.model.partner_id.lower() in self.partner_ids

    def filters(self) -> dict[str, Any]:
        """The list routes' own filters for these (``statuses``/``settlementStatuses`` named by the caller)."""
        return {"partner_ids": None if self.partner_ids is None else list(self.partner_ids)}

    def describe(self) -> str:
        """For log lines."""
        partners = "" if self.partner_ids is None else f" partners={','.join(self.partner_ids)}"
        return f"statuses={','.join(self.statuses)}{partners}"


class WatchedSettlement:
    """One settlement as the watcher handles it: the validated model and the record it emits.

    :param model: The settlement (validated; unknown fields kept, ``disputeWindowEndsAt`` among them).
    """

    __slots__ = ("model",)

    def __init__(self, model: ListedSettlement) -> None:
        self.model = model

    def __repr__(self) -> str:
        return f"WatchedSettlement({self.id!r}, {self.status!r}, {self.updated_at.isoformat()!r})"

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def status(self) -> str:
        return status_text(self.model)

    @property
    def updated_at(self) -> datetime:
        return self.model.updated_at

    def to_json_dict(self) -> dict[str, Any]:
        """The API's JSON shape, with ``disputeWindowEndsAt`` (``None`` when the watcher did not set one)."""
        data = self.model.to_json_dict()
        data.setdefault(WINDOW_END_FIELD, None)
        return data


def parse_settlement(record: Any, record_id: str, enterprise_id: str) -> WatchedSettlement:
    """Validate one settlement record (raises :class:`~airflow_provider_oes.exceptions.OESResponseError`, naming it)."""
    model = parse_record(ListedSettlement, record, what="the settlements list", enterprise_id=enterprise_id, position=0)
    if model.id.lower() != record_id.lower():
        raise ValueError(f"the record of settlement {record_id!r} has id {model.id!r}")
    return WatchedSettlement(model)


def delivery_key(settlement: WatchedSettlement) -> str:
    """``id/status/updatedAt``: each change of a settlement is a delivery of its own (as in ``_acks``)."""
    stamp = settlement.updated_at.astimezone(timezone.utc).isoformat()
    return f"{settlement.id.lower()}/{settlement.status.lower()}/{stamp}"


def _wanted(query: Any, settlement: Any) -> bool:
    return isinstance(settlement, WatchedSettlement) and bool(query.matches(settlement))


def settlement_resource(open_subscription: Callable[..., Any]) -> WatchedResource:
    """The watched-resource description of settlements, read through ``open_subscription``."""
    return WatchedResource(
        noun="settlement",
        payload_key=SETTLEMENTS_PAYLOAD_KEY,
        parse=parse_settlement,
        wanted=_wanted,
        key=delivery_key,
        cap_attribute="max_settlements_per_event",
        open_subscription=open_subscription,
    )

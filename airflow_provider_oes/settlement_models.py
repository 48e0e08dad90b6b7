"""Typed models of BitGo OES client settlements, and the one place that states the settlement status rules.

Settlements, their transfers (the per-currency movements), the disputes raised against them and the
partners' dispute and top-up windows, as the client read routes return them. Amounts stay the exact text
the API sent (signed base-unit integer strings; ``usdValue`` cents as an exact decimal string, never a
float); unknown fields are kept. Status rules (``docs/settlements.rst``): ``pending`` and ``failed`` are
not final (BitGo retries a failed settlement), ``completed`` and ``rejected`` are final, and ``completed``
is the only success.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import Field, StrictBool, StrictStr, ValidationInfo, field_validator, model_validator

from airflow_provider_oes._dispute_models import AssignedDispute, Dispute, DisputeClosure, DisputedSettlementTransfer
from airflow_provider_oes._settlement_fields import (
    FINAL_SETTLEMENT_STATUSES,
    SETTLEMENT_SUCCESS_STATUS,
    DisputeClosureStatus,
    SettlementModel,
    SettlementStatus,
    SettlementTransferStatus,
    SettlementType,
    TransferDirection,
    enum_or_raw,
    exact_decimal_text,
    is_settlement_final,
    is_settlement_success,
    known,
    signed_base_units,
)

__all__ = [
    "FINAL_SETTLEMENT_STATUSES",
    "SETTLEMENT_SUCCESS_STATUS",
    "AssignedDispute",
    "Dispute",
    "DisputeClosure",
    "DisputeClosureStatus",
    "DisputedSettlementTransfer",
    "ListedSettlement",
    "Partner",
    "Settlement",
    "SettlementDetails",
    "SettlementStatus",
    "SettlementTransfer",
    "SettlementTransferStatus",
    "SettlementType",
    "TransferDirection",
    "dispute_window_end",
    "is_settlement_final",
    "is_settlement_success",
    "top_up_window_end",
]


class Settlement(SettlementModel):
    """One settlement (``V1SettlementOutput``), as in ``GET .../clients/settlements/{settlementId}``.

    The four shapes of the spec are told apart by ``status``, and each one's required fields are checked:
    ``failed`` needs a ``reason``, ``completed`` a ``finalizedAt``, ``rejected`` both. (A field the spec
    leaves out of a shape is tolerated, as any field BitGo may add.)
    A status this package does not know is kept as a string and never treated as final or success.
    The settlement carries no amounts: those are its transfers (:class:`SettlementTransfer`).
    """

    id: StrictStr = Field(min_length=1)
    partner_id: StrictStr = Field(min_length=1)
    external_id: StrictStr = Field(min_length=1)
    status: SettlementStatus | StrictStr
    settlement_type: SettlementType | StrictStr
    reconciled: StrictBool
    initiated_by: StrictStr = Field(min_length=1)
    notes: StrictStr | None = None
    created_at: datetime
    updated_at: datetime
    rt_id: StrictStr | None = Field(default=None, alias="rtId")
    loss_sla_alert_sent: StrictBool = Field(alias="lossSLAAlertSent")
    gain_sla_alert_sent: StrictBool = Field(alias="gainSLAAlertSent")
    cutoff_at: datetime | None = None
    disputed: StrictBool | None = None
    reason: StrictStr | None = None
    finalized_at: datetime | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return enum_or_raw(SettlementStatus, value)

    @field_validator("settlement_type", mode="before")
    @classmethod
    def _settlement_type(cls, value: Any) -> Any:
        return enum_or_raw(SettlementType, value)

    @model_validator(mode="after")
    def _shape_of_status(self) -> Settlement:
        status = known(SettlementStatus, self.status)
        if status is None:
            return self
        needs_reason = status in (SettlementStatus.FAILED, SettlementStatus.REJECTED)
        needs_final = status in (SettlementStatus.COMPLETED, SettlementStatus.REJECTED)
        for field, needed, present in (
            ("reason", needs_reason, bool(self.reason)),
            ("finalizedAt", needs_final, self.finalized_at is not None),
        ):
            if needed and not present:
                raise ValueError(f"a {status.value} settlement must carry {field!r}")
        return self

    @property
    def is_final(self) -> bool:
        """True once ``completed`` or ``rejected``."""
        return is_settlement_final(self.status)

    @property
    def is_completed(self) -> bool:
        """True only when ``completed``: the one state in which its transfers have been made."""
        return is_settlement_success(self.status)

    @property
    def is_rejected(self) -> bool:
        return known(SettlementStatus, self.status) is SettlementStatus.REJECTED

    @property
    def is_failed(self) -> bool:
        """True when ``failed``: not final, BitGo retries it."""
        return known(SettlementStatus, self.status) is SettlementStatus.FAILED

    @property
    def has_known_status(self) -> bool:
        return known(SettlementStatus, self.status) is not None

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Settlement:
        return cls.model_validate(data)

    def describe(self) -> str:
        """A one-line description: id, partner's id for it, type, status and reason."""
        text = f"settlement {self.id} ({self.external_id}, {self.settlement_type}) is {self.status}"
        return f"{text} (reason: {self.reason})" if self.reason else text


class ListedSettlement(Settlement):
    """A settlement as the list route returns it: with ``transferDirection`` from the client's side."""

    transfer_direction: TransferDirection | StrictStr

    @field_validator("transfer_direction", mode="before")
    @classmethod
    def _direction(cls, value: Any) -> Any:
        return enum_or_raw(TransferDirection, value)


class SettlementTransfer(SettlementModel):
    """One currency movement of a settlement (an item of ``MaskedV1SettlementTransfersOutput``).

    ``quantity`` is signed and never zero (> 0: source to destination; < 0: the reverse), in base units, kept
    as the API's string. ``usd_value`` is in US cents, sent as a string or a number: kept as its exact decimal
    text (always a string in :meth:`to_json_dict`), or ``None``.
    """

    id: StrictStr = Field(min_length=1)
    settlement_id: StrictStr = Field(min_length=1)
    currency: StrictStr = Field(min_length=1)
    quantity: StrictStr
    tx_ids: list[StrictStr]
    status: SettlementTransferStatus | StrictStr
    usd_value: StrictStr | None
    created_at: datetime
    updated_at: datetime
    settlement_status: SettlementStatus | StrictStr
    settlement_notes: StrictStr | None = None
    dispute_closure_id: StrictStr | None = None
    source_trading_account_id: StrictStr | None = None
    destination_trading_account_id: StrictStr | None = None
    source_network_account_id: StrictStr | None = None
    destination_network_account_id: StrictStr | None = None
    source_client_name: StrictStr | None = None
    destination_client_name: StrictStr | None = None
    source_connection_name: StrictStr | None = None
    destination_connection_name: StrictStr | None = None

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, value: str) -> str:
        return signed_base_units("quantity", value)

    @field_validator("usd_value", mode="before")
    @classmethod
    def _usd_value(cls, value: Any) -> Any:
        return None if value is None else exact_decimal_text("usdValue", value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return enum_or_raw(SettlementTransferStatus, value)

    @field_validator("settlement_status", mode="before")
    @classmethod
    def _settlement_status(cls, value: Any) -> Any:
        return enum_or_raw(SettlementStatus, value)

    @property
    def usd_cents(self) -> Decimal | None:
        """``usdValue`` as an exact :class:`~decimal.Decimal` of cents (``None`` when the API sent null)."""
        return None if self.usd_value is None else Decimal(self.usd_value)

    @property
    def is_completed(self) -> bool:
        return known(SettlementTransferStatus, self.status) is SettlementTransferStatus.COMPLETED


class SettlementDetails(SettlementModel):
    """The answer of ``GET .../clients/settlements/{settlementId}``: the settlement, its transfers, the
    disputes it pays out (``settlingDisputes``) and the disputes raised against it (``settlementDisputes``)."""

    settlement: Settlement
    settlement_transfers: list[SettlementTransfer]
    settling_disputes: list[AssignedDispute]
    settlement_disputes: list[Dispute]

    @model_validator(mode="after")
    def _transfers_belong(self) -> SettlementDetails:
        for transfer in self.settlement_transfers:
            if transfer.settlement_id.lower() != self.settlement.id.lower():
                raise ValueError(
                    f"transfer {transfer.id!r} belongs to settlement {transfer.settlement_id!r}, "
                    f"not to {self.settlement.id!r}"
                )
        return self


class Partner(SettlementModel):
    """A partner (exchange) and its dispute settings (``GET .../partners``).

    ``client_dispute_window_minutes`` is absent for partners without disputes (their settlements are
    processed at once); ``top_up_window_minutes`` is the top-up period that follows the dispute window.
    Both are exact numbers (``int`` or :class:`~decimal.Decimal`), never floats.
    """

    id: StrictStr = Field(min_length=1)
    name: StrictStr
    institution_identifier: StrictStr
    connection_key_schema: StrictStr
    active: StrictBool
    trust_org: StrictStr
    stable_partner: StrictBool
    institution_id: StrictStr | None = None
    settlement_transaction_route_id: StrictStr | None = None
    public_key: StrictStr | None = None
    enterprise_id: StrictStr | None = None
    client_dispute_window_minutes: int | Decimal | None = None
    top_up_window_minutes: int | Decimal | None = None

    @field_validator("client_dispute_window_minutes", "top_up_window_minutes", mode="before")
    @classmethod
    def _minutes(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        name = info.field_name or "minutes"
        if isinstance(value, str):
            raise ValueError(f"{name} must be a JSON number, got the string {value[:40]!r}")
        text = exact_decimal_text(name, value)
        exact = Decimal(text)
        return int(exact) if exact == exact.to_integral_value() else exact

    @property
    def has_disputes(self) -> bool:
        """True when the partner supports disputes (it sends a dispute window, 0 included)."""
        return self.client_dispute_window_minutes is not None


def _minutes(value: int | Decimal) -> timedelta:
    try:
        return timedelta(minutes=int(value)) + timedelta(seconds=float((Decimal(value) % 1) * 60))
    except (InvalidOperation, OverflowError) as exc:  # pragma: no cover - bounded by the model's 30 digits
        raise ValueError(f"{value} minutes is not a usable duration") from exc


def dispute_window_end(settlement: Settlement, partner: Partner) -> datetime | None:
    """When the client's dispute window closes, or ``None`` for a partner without disputes.

    BitGo does not say where the window starts (the settlement carries no deadline): this package counts it
    from the settlement's ``createdAt``, the moment the clients are notified. See ``docs/settlements.rst``.

    :param settlement: The settlement.
    :param partner: Its partner (``settlement.partner_id``).
    :raises ValueError: when the partner is not the settlement's.
    """
    if partner.id.lower() != settlement.partner_id.lower():
        raise ValueError(f"partner {partner.id!r} is not the partner {settlement.partner_id!r} of {settlement.id!r}")
    if partner.client_dispute_window_minutes is None:
        return None
    return settlement.created_at + _minutes(partner.client_dispute_window_minutes)


def top_up_window_end(settlement: Settlement, partner: Partner) -> datetime | None:
    """When the top-up window that follows the dispute window closes (the earliest BitGo processes a v2
    settlement); ``None`` for a partner without disputes."""
    end = dispute_window_end(settlement, partner)
    if end is None:
        return None
    return end + _minutes(partner.top_up_window_minutes or 0)

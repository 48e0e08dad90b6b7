"""Typed models of BitGo OES client settlements, and the one place that states the settlement status rules.

Settlements, their transfers (the per-currency movements), the disputes raised against them and the
partners' dispute and top-up windows, as the client read routes return them. As for allocations, amounts
stay the exact text the API sent: base-unit quantities are signed integer strings, and ``usdValue`` (cents,
sent as a string or a JSON number) is kept as an exact decimal string, never a float. Unknown fields are kept.

Status rules (BitGo's own words, see ``docs/settlements.rst``): ``pending`` and ``failed`` are not final
(BitGo retries a failed settlement), ``completed`` and ``rejected`` are final, and ``completed`` is the only
success.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from airflow_provider_oes._time import format_api_datetime
from airflow_provider_oes.models import APIModel

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


class _WireEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


class SettlementStatus(_WireEnum):
    """Status of a settlement, as BitGo reports it (``SettlementStatuses``)."""

    PENDING = "pending"
    """Not processed yet (a v2 settlement waits here through the dispute and top-up windows)."""
    FAILED = "failed"
    """Processing failed. **Not final**: BitGo says it is retried. Carries a ``reason``."""
    COMPLETED = "completed"
    """Final, the only success. Carries ``finalizedAt``."""
    REJECTED = "rejected"
    """Final, failure: a BitGo admin rejected it (on-chain only). Carries ``reason`` and ``finalizedAt``."""


FINAL_SETTLEMENT_STATUSES: frozenset[SettlementStatus] = frozenset(
    {SettlementStatus.COMPLETED, SettlementStatus.REJECTED}
)
"""Statuses after which a settlement never changes again. ``failed`` is not one of them."""

SETTLEMENT_SUCCESS_STATUS: SettlementStatus = SettlementStatus.COMPLETED
"""The only status in which a settlement's transfers have been made."""


class SettlementType(_WireEnum):
    ONCHAIN = "onchain"
    OFFCHAIN = "offchain"


class TransferDirection(_WireEnum):
    """Which way funds move from the client's side (only the list route sends it)."""

    SEND = "send"
    RECEIVE = "receive"
    SEND_AND_RECEIVE = "send-and-receive"


class SettlementTransferStatus(_WireEnum):
    """Status of one settlement transfer (``SettlementTransferStatus``); ``completed`` is its success."""

    PENDING = "pending"
    PENDING_ONCHAIN = "pending_onchain"
    ONCHAIN_INITIATED = "onchain_initiated"
    ONCHAIN_FAILED = "onchain_failed"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    DISPUTED = "disputed"
    PENDING_SETTLEMENT_ASSIGNMENT = "pending_settlement_assignment"


class DisputeClosureStatus(_WireEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


_E = TypeVar("_E", bound=Enum)


def _known(enum: type[_E], value: object) -> _E | None:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        return None


def is_settlement_final(status: SettlementStatus | str) -> bool:
    """True for ``completed`` and ``rejected``; False for ``pending``, ``failed`` and any unknown value."""
    return _known(SettlementStatus, status) in FINAL_SETTLEMENT_STATUSES


def is_settlement_success(status: SettlementStatus | str) -> bool:
    """True only for ``completed``. An unknown status is never success."""
    return _known(SettlementStatus, status) is SETTLEMENT_SUCCESS_STATUS


def _enum_or_raw(enum: type[Enum], value: Any) -> Any:
    # Known values become members; unknown strings stay strings (BitGo adds values over time): they are then
    # never final nor success. Non-strings are left for pydantic to refuse.
    if not isinstance(value, str) or isinstance(value, Enum):
        return value
    return _known(enum, value) or value


_SIGNED_BASE_UNITS = re.compile(r"-?[1-9][0-9]*")
_MAX_AMOUNT_DIGITS = 80
_CENTS_TEXT = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,12})?")


def _signed_base_units(name: str, value: str) -> str:
    if len(value) > _MAX_AMOUNT_DIGITS + 1 or not _SIGNED_BASE_UNITS.fullmatch(value):
        raise ValueError(
            f"{name} must be a non-zero signed integer in base units as a string (e.g. '-1500'), got {value[:90]!r}"
        )
    return value


def _exact_decimal_text(name: str, value: object) -> str:
    """A non-negative number sent as a string, an integer or an exact decimal, as its exact decimal text."""
    if isinstance(value, (bool, float)):
        # A float has already lost digits: refuse it instead of carrying a rounded amount on.
        raise ValueError(f"{name} must be an exact number (a string, an integer or a Decimal), got {value!r}")
    if isinstance(value, int):
        text = str(value) if 0 <= value < 10**30 else ""
    elif isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        exact = isinstance(exponent, int) and exponent >= -12 and value >= 0 and value.adjusted() < 30
        text = format(value, "f") if exact else ""
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"{name} must be a number or a string holding one, got {type(value).__name__}")
    if not _CENTS_TEXT.fullmatch(text):
        raise ValueError(f"{name} must be a non-negative decimal number of at most 30 digits, got {str(value)[:60]!r}")
    return text


class _Model(APIModel):
    @field_serializer("*", mode="wrap", when_used="json")
    def _serialize(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        # Timestamps in BitGo's own form (milliseconds, Z) so that the JSON shape round-trips; the only
        # Decimals are a partner's window minutes, a JSON number on the wire.
        if isinstance(value, datetime):
            return format_api_datetime(value)
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return handler(value)

    def to_json_dict(self) -> dict[str, Any]:
        """The API's own JSON shape: camelCase keys, ISO 8601 timestamps, amounts as strings, unknown fields
        included, optional fields only when the API sent them. This is what goes to XCom."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Settlement(_Model):
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
        return _enum_or_raw(SettlementStatus, value)

    @field_validator("settlement_type", mode="before")
    @classmethod
    def _settlement_type(cls, value: Any) -> Any:
        return _enum_or_raw(SettlementType, value)

    @model_validator(mode="after")
    def _shape_of_status(self) -> Settlement:
        status = _known(SettlementStatus, self.status)
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
        return _known(SettlementStatus, self.status) is SettlementStatus.REJECTED

    @property
    def is_failed(self) -> bool:
        """True when ``failed``: not final, BitGo retries it."""
        return _known(SettlementStatus, self.status) is SettlementStatus.FAILED

    @property
    def has_known_status(self) -> bool:
        return _known(SettlementStatus, self.status) is not None

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
        return _enum_or_raw(TransferDirection, value)


class SettlementTransfer(_Model):
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
        return _signed_base_units("quantity", value)

    @field_validator("usd_value", mode="before")
    @classmethod
    def _usd_value(cls, value: Any) -> Any:
        return None if value is None else _exact_decimal_text("usdValue", value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return _enum_or_raw(SettlementTransferStatus, value)

    @field_validator("settlement_status", mode="before")
    @classmethod
    def _settlement_status(cls, value: Any) -> Any:
        return _enum_or_raw(SettlementStatus, value)

    @property
    def usd_cents(self) -> Decimal | None:
        """``usdValue`` as an exact :class:`~decimal.Decimal` of cents (``None`` when the API sent null)."""
        return None if self.usd_value is None else Decimal(self.usd_value)

    @property
    def is_completed(self) -> bool:
        return _known(SettlementTransferStatus, self.status) is SettlementTransferStatus.COMPLETED


def _signed_amounts(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        for currency, quantity in value.items():
            if isinstance(quantity, str):
                _signed_base_units(f"{name}[{currency!r}]", quantity)
    return value


class DisputedSettlementTransfer(_Model):
    """A transfer made by closing a dispute (``DisputedSettlementTransfersOutput``); ``settlement_id`` is absent
    while it waits for a later settlement (status ``pending_settlement_assignment``)."""

    id: StrictStr = Field(min_length=1)
    source_trading_account_id: StrictStr
    destination_trading_account_id: StrictStr
    destination_network_account_id: StrictStr
    dispute_closure_id: StrictStr
    currency: StrictStr = Field(min_length=1)
    quantity: StrictStr
    status: SettlementTransferStatus | StrictStr
    created_at: datetime
    updated_at: datetime
    settlement_id: StrictStr | None = None
    source_network_account_id: StrictStr | None = None

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, value: str) -> str:
        return _signed_base_units("quantity", value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return _enum_or_raw(SettlementTransferStatus, value)


class DisputeClosure(_Model):
    """How a dispute was closed (``DisputeClosureOutput``)."""

    id: StrictStr = Field(min_length=1)
    closed_by: StrictStr
    user_id: StrictStr
    notes: StrictStr
    adjusted_settlement_transfers: list[DisputedSettlementTransfer]
    created_at: datetime
    status: DisputeClosureStatus | StrictStr
    adjusted_transfers: dict[StrictStr, StrictStr]
    reviewed_by: StrictStr | None = None
    review_notes: StrictStr | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return _enum_or_raw(DisputeClosureStatus, value)

    @field_validator("adjusted_transfers")
    @classmethod
    def _amounts(cls, value: dict[str, str]) -> dict[str, str]:
        return _signed_amounts("adjustedTransfers", value)


class Dispute(_Model):
    """A dispute raised against a settlement (``V1DisputeOutput``, with its optional ``disputeClosure``)."""

    id: StrictStr = Field(min_length=1)
    created_at: datetime
    updated_at: datetime
    connection_id: StrictStr = Field(min_length=1)
    disputed_settlement_id: StrictStr = Field(min_length=1)
    user_id: StrictStr = Field(min_length=1)
    expected_transfers: dict[StrictStr, StrictStr]
    retracted: StrictBool
    settled_in_settlement_id: StrictStr | None = None
    reason: StrictStr | None = None
    retracted_by: StrictStr | None = None
    retracted_at: datetime | None = None
    dispute_closure_id: StrictStr | None = None
    retracted_reason: StrictStr | None = None
    dispute_closure: DisputeClosure | None = None

    @field_validator("expected_transfers")
    @classmethod
    def _amounts(cls, value: dict[str, str]) -> dict[str, str]:
        return _signed_amounts("expectedTransfers", value)

    @property
    def is_open(self) -> bool:
        """Raised, not retracted and not closed: the settlement waits on BitGo's review."""
        return not self.retracted and self.dispute_closure_id is None and self.dispute_closure is None


class AssignedDispute(Dispute):
    """A closed dispute being paid out in a later settlement (an item of ``settlingDisputes``)."""

    dispute_closure_id: StrictStr = Field(min_length=1)
    dispute_closure: DisputeClosure
    settled_in_settlement_id: StrictStr = Field(min_length=1)


class SettlementDetails(_Model):
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


class Partner(_Model):
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
        text = _exact_decimal_text(name, value)
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

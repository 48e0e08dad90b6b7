"""The settlement vocabulary: status enums, the status rules, and the validators the settlement models share.

Public names from :mod:`airflow_provider_oes.settlement_models`, which re-exports the enums and status rules.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from pydantic import SerializerFunctionWrapHandler, field_serializer

from airflow_provider_oes._time import format_api_datetime
from airflow_provider_oes.models import APIModel


class WireEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


class SettlementStatus(WireEnum):
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


class SettlementType(WireEnum):
    ONCHAIN = "onchain"
    OFFCHAIN = "offchain"


class TransferDirection(WireEnum):
    """Which way funds move from the client's side (only the list route sends it)."""

    SEND = "send"
    RECEIVE = "receive"
    SEND_AND_RECEIVE = "send-and-receive"


class SettlementTransferStatus(WireEnum):
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


class DisputeClosureStatus(WireEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


_E = TypeVar("_E", bound=Enum)


def known(enum: type[_E], value: object) -> _E | None:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        return None


def is_settlement_final(status: SettlementStatus | str) -> bool:
    """True for ``completed`` and ``rejected``; False for ``pending``, ``failed`` and any unknown value."""
    return known(SettlementStatus, status) in FINAL_SETTLEMENT_STATUSES


def is_settlement_success(status: SettlementStatus | str) -> bool:
    """True only for ``completed``. An unknown status is never success."""
    return known(SettlementStatus, status) is SETTLEMENT_SUCCESS_STATUS


def enum_or_raw(enum: type[Enum], value: Any) -> Any:
    # Known values become members; unknown strings stay strings (BitGo adds values over time): they are then
    # never final nor success. Non-strings are left for pydantic to refuse.
    if not isinstance(value, str) or isinstance(value, Enum):
        return value
    return known(enum, value) or value


_SIGNED_BASE_UNITS = re.compile(r"-?[1-9][0-9]*")
_MAX_AMOUNT_DIGITS = 80
_CENTS_TEXT = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,12})?")


def signed_base_units(name: str, value: str) -> str:
    if len(value) > _MAX_AMOUNT_DIGITS + 1 or not _SIGNED_BASE_UNITS.fullmatch(value):
        raise ValueError(
            f"{name} must be a non-zero signed integer in base units as a string (e.g. '-1500'), got {value[:90]!r}"
        )
    return value


def exact_decimal_text(name: str, value: object) -> str:
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


class SettlementModel(APIModel):
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

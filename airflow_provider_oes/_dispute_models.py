"""Typed models of the disputes raised against settlements and of their closures (the adjusted transfers)."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - pydantic reads the annotations at runtime
from typing import Any

from pydantic import Field, StrictBool, StrictStr, field_validator

from airflow_provider_oes._settlement_fields import (
    DisputeClosureStatus,
    SettlementModel,
    SettlementTransferStatus,
    enum_or_raw,
    signed_base_units,
)


def signed_amounts(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        for currency, quantity in value.items():
            if isinstance(quantity, str):
                signed_base_units(f"{name}[{currency!r}]", quantity)
    return value


class DisputedSettlementTransfer(SettlementModel):
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
        return signed_base_units("quantity", value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return enum_or_raw(SettlementTransferStatus, value)


class DisputeClosure(SettlementModel):
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
        return enum_or_raw(DisputeClosureStatus, value)

    @field_validator("adjusted_transfers")
    @classmethod
    def _amounts(cls, value: dict[str, str]) -> dict[str, str]:
        return signed_amounts("adjustedTransfers", value)


class Dispute(SettlementModel):
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
        return signed_amounts("expectedTransfers", value)

    @property
    def is_open(self) -> bool:
        """Raised, not retracted and not closed: the settlement waits on BitGo's review."""
        return not self.retracted and self.dispute_closure_id is None and self.dispute_closure is None


class AssignedDispute(Dispute):
    """A closed dispute being paid out in a later settlement (an item of ``settlingDisputes``)."""

    dispute_closure_id: StrictStr = Field(min_length=1)
    dispute_closure: DisputeClosure
    settled_in_settlement_id: StrictStr = Field(min_length=1)

"""Typed models of BitGo OES client allocations, and the one place that states the status rules.

Amounts are base-unit integers carried as decimal strings from the wire to XCom: they are never
converted to a number, so quantities of any length round-trip exactly.
"""

from __future__ import annotations

import re
from datetime import datetime  # noqa: TC003 - pydantic reads the annotations at runtime
from enum import Enum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_camel

from airflow_provider_oes._time import format_api_datetime

__all__ = [
    "ALLOCATIONS_PAYLOAD_KEY",
    "FINAL_STATUS_VALUES",
    "SETTLEMENTS_PAYLOAD_KEY",
    "STATUS_VALUES",
    "SUCCESS_STATUS",
    "TERMINAL_STATUSES",
    "TYPE_VALUES",
    "Allocation",
    "AllocationAmount",
    "AllocationStatus",
    "AllocationType",
    "PolicyResult",
    "is_success",
    "is_terminal",
]

_BASE_UNITS = re.compile(r"[0-9]+")


class AllocationStatus(str, Enum):
    """Status of an allocation or deallocation, as BitGo reports it."""

    RESERVED = "reserved"
    """Temporary: the amount is reserved and the operation has not completed."""
    CLEARED = "cleared"
    """Terminal, success: the funds were allocated (or deallocated)."""
    RELEASED = "released"
    """Terminal, failure: the funds were returned (insufficient balance or the partner rejected it)."""

    def __str__(self) -> str:
        return self.value


class AllocationType(str, Enum):
    """Whether the record moves funds to a connection (allocation) or back from it (deallocation)."""

    ALLOCATION = "allocation"
    DEALLOCATION = "deallocation"

    def __str__(self) -> str:
        return self.value


class PolicyResult(str, Enum):
    """Result of BitGo's policy evaluation for the allocation, when one was performed."""

    APPROVED = "approved"
    REJECTED = "rejected"

    def __str__(self) -> str:
        return self.value


_FIELD_ENUMS: dict[str, type[Enum]] = {
    "status": AllocationStatus,
    "type": AllocationType,
    "policy_result": PolicyResult,
}

TERMINAL_STATUSES: frozenset[AllocationStatus] = frozenset({AllocationStatus.CLEARED, AllocationStatus.RELEASED})
"""Statuses after which the allocation never changes again."""

SUCCESS_STATUS: AllocationStatus = AllocationStatus.CLEARED
"""The only status that lets a settlement go ahead."""

ALLOCATIONS_PAYLOAD_KEY = "allocations"
"""Where a watcher's event payload lists its allocations (written by the trigger, read by ``new_allocations``)."""

SETTLEMENTS_PAYLOAD_KEY = "settlements"
"""Where a watcher's event payload lists its settlements (written by the trigger, read by ``new_settlements``)."""

STATUS_VALUES: tuple[str, ...] = tuple(sorted(status.value for status in AllocationStatus))
"""Every status as the API spells it (the list endpoint's ``statuses`` filter takes these)."""
FINAL_STATUS_VALUES: tuple[str, ...] = tuple(sorted(status.value for status in TERMINAL_STATUSES))
"""The final statuses as the API spells them: ``cleared``, ``released``."""
TYPE_VALUES: tuple[str, ...] = tuple(sorted(kind.value for kind in AllocationType))
"""Every record type as the API spells it: ``allocation``, ``deallocation``."""


def _known_status(status: AllocationStatus | str) -> AllocationStatus | None:
    if isinstance(status, AllocationStatus):
        return status
    try:
        return AllocationStatus(status)
    except ValueError:
        return None


def is_terminal(status: AllocationStatus | str) -> bool:
    """Return True for ``cleared`` and ``released``; False for ``reserved`` and any unknown value."""
    return _known_status(status) in TERMINAL_STATUSES


def is_success(status: AllocationStatus | str) -> bool:
    """Return True only for ``cleared``. An unknown status is never success."""
    return _known_status(status) is SUCCESS_STATUS


class APIModel(BaseModel):
    # snake_case in Python, camelCase on the wire; unknown fields are kept (BitGo adds fields over time).
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
    )


class AllocationAmount(APIModel):
    """An amount in the currency's base units (for example satoshi for BTC).

    :param currency: BitGo currency identifier, e.g. ``ofctbtc``.
    :param quantity: Base-unit integer as a decimal string, exactly as the API sent it. Never a float.
    """

    currency: StrictStr = Field(min_length=1)
    quantity: StrictStr

    @field_validator("quantity")
    @classmethod
    def _quantity_is_base_units(cls, value: str) -> str:
        if not _BASE_UNITS.fullmatch(value):
            raise ValueError(f"quantity must be a non-negative integer in base units as a string, got {value!r}")
        return value

    def __str__(self) -> str:
        return f"{self.quantity} {self.currency}"


class Allocation(APIModel):
    """One client allocation or deallocation, as returned by
    ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations/{allocationId}``.

    Attributes are snake_case; :meth:`to_json_dict` gives back the API's own camelCase shape.
    Fields BitGo adds in the future are kept in ``model_extra`` and in :meth:`to_json_dict`.
    ``status`` is an :class:`AllocationStatus`, or the raw string when BitGo sends a value this
    package does not know (such a value is never treated as success).
    """

    id: StrictStr = Field(min_length=1)
    amount: AllocationAmount
    connection_id: StrictStr
    client_external_id: StrictStr = Field(min_length=1)
    partner_external_id: StrictStr | None = None
    initiated_by: StrictStr = Field(min_length=1)
    notes: StrictStr | None = None
    created_at: datetime
    updated_at: datetime
    retriable: StrictBool
    reason: StrictStr | None = None
    status: AllocationStatus | StrictStr
    type: AllocationType | StrictStr
    evaluation_id: StrictStr | None = None
    pending_approval_id: StrictStr | None = None
    policy_result: PolicyResult | StrictStr | None = None

    @field_validator("status", "type", "policy_result", mode="before")
    @classmethod
    def _enum_or_raw(cls, value: Any, info: ValidationInfo) -> Any:
        # Known values become enum members; unknown strings stay strings so that a new status
        # from BitGo is reported ("unknown, keep waiting") instead of failing validation.
        if not isinstance(value, str) or isinstance(value, Enum):
            return value
        try:
            return _FIELD_ENUMS[info.field_name or ""](value)
        except ValueError:
            return value

    @field_serializer("created_at", "updated_at")
    def _serialize_timestamp(self, value: datetime) -> str:
        return format_api_datetime(value)

    @property
    def is_terminal(self) -> bool:
        """True once the allocation is ``cleared`` or ``released``."""
        return is_terminal(self.status)

    @property
    def is_cleared(self) -> bool:
        """True only when the allocation is ``cleared``: the one state in which settlement may go ahead."""
        return is_success(self.status)

    @property
    def is_released(self) -> bool:
        """True when the allocation is ``released`` (terminal failure)."""
        return _known_status(self.status) is AllocationStatus.RELEASED

    @property
    def has_known_status(self) -> bool:
        """False when BitGo sent a status value this package does not know."""
        return _known_status(self.status) is not None

    def to_json_dict(self) -> dict[str, Any]:
        """Return the allocation in the API's own JSON shape: camelCase keys, ISO 8601 timestamps,
        amounts as strings, unknown fields included, optional fields only when the API sent them.
        This is what goes to XCom."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Allocation:
        """Parse the API's JSON shape (the inverse of :meth:`to_json_dict`)."""
        return cls.model_validate(data)

    def describe(self) -> str:
        """A one-line human description: type, id, amount, status and reason."""
        text = f"{self.type} {self.id} of {self.amount} is {self.status}"
        return f"{text} (reason: {self.reason})" if self.reason else text

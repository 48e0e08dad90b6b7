"""
The simulator's settlements: partners and their windows, settlements with their transfers and timelines, and
the disputes raised against them.

* A partner without ``clientDisputeWindowMinutes`` settles v1: its settlements are created already final
  (``completed`` by default), as BitGo processes them synchronously.
* A partner with a window settles v2: a settlement is created ``pending`` with ``cutoffAt``, and becomes final
  once the dispute window and the top-up window have passed (``pending_for_seconds`` shortens that for tests).
  It may pass through ``failed`` first (``failed_for_seconds``: BitGo retries a failed settlement).
* A dispute raised and not retracted holds the settlement ``pending`` (BitGo reviews it); retracting it lets
  the timeline go on (a due step then applies at the next request). The settlement gets ``disputed: true``.
* Every change is materialised by :meth:`SettlementBook.advance` (every settlement route calls it first),
  stamped with the simulator's clock at the moment it was due; transfers follow their settlement's status.

The status vocabulary is the provider's own (:mod:`airflow_provider_oes.settlement_models`), so the simulator
and the client cannot disagree on what the four statuses are.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.settlement_models import SettlementStatus
from airflow_provider_oes.testing.simulator._common import iso_ms

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator._common import Clock

#: every settlement status, as the API spells them
SETTLEMENT_STATUSES = tuple(status.value for status in SettlementStatus)
#: the transfer status that goes with each settlement status
_TRANSFER_STATUS = {"pending": "pending", "failed": "pending", "completed": "completed", "rejected": "rejected"}


@dataclass(eq=False)
class Partner:
    id: str
    name: str
    dispute_window_minutes: float | None
    top_up_window_minutes: float | None
    active: bool = True
    institution_id: str | None = None
    extra_fields: dict[str, Any] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "institutionIdentifier": f"sim-{self.name.lower().replace(' ', '-')}",
            "connectionKeySchema": "token",
            "active": self.active,
            "trustOrg": "BitGo Trust Company",
            "stablePartner": False,
        }
        if self.institution_id is not None:
            record["institutionId"] = self.institution_id
        for key, minutes in (
            ("clientDisputeWindowMinutes", self.dispute_window_minutes),
            ("topUpWindowMinutes", self.top_up_window_minutes),
        ):
            if minutes is not None:
                record[key] = int(minutes) if float(minutes).is_integer() else minutes
        record.update(copy.deepcopy(self.extra_fields))
        return record


@dataclass(eq=False)
class Transfer:
    id: str
    currency: str
    quantity: str
    usd_value: str | int | None
    created_ms: int
    source_trading_account_id: str | None = None
    destination_trading_account_id: str | None = None


@dataclass(eq=False)
class Dispute:
    id: str
    settlement_id: str
    connection_id: str
    user_id: str
    expected_transfers: dict[str, str]
    reason: str | None
    created_ms: int
    updated_ms: int
    retracted: bool = False
    retracted_reason: str | None = None
    retracted_ms: int | None = None

    def render(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms),
            "connectionId": self.connection_id,
            "disputedSettlementId": self.settlement_id,
            "userId": self.user_id,
            "expectedTransfers": dict(self.expected_transfers),
            "retracted": self.retracted,
        }
        if self.reason is not None:
            record["reason"] = self.reason
        if self.retracted_ms is not None:
            record.update(retractedBy=self.user_id, retractedAt=iso_ms(self.retracted_ms))
            if self.retracted_reason is not None:
                record["retractedReason"] = self.retracted_reason
        return record


@dataclass(eq=False)
class Settlement:
    id: str
    enterprise_id: str
    partner_id: str
    connection_id: str
    counterparty_connection_id: str
    external_id: str
    settlement_type: str
    initiated_by: str
    transfer_direction: str
    created_ms: int
    transfers: list[Transfer]
    status: str = "pending"
    reason: str | None = None
    updated_ms: int = 0
    finalized_ms: int | None = None
    cutoff_ms: int | None = None
    disputed: bool = False
    notes: str | None = None
    extra_fields: dict[str, Any] = field(default_factory=dict)
    #: a step came due while a dispute was open: applied once no dispute is open
    held: list[tuple[str, str | None]] = field(default_factory=list)

    def render(self, listed: bool = False) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "partnerId": self.partner_id,
            "externalId": self.external_id,
            "status": self.status,
            "settlementType": self.settlement_type,
            "reconciled": False,
            "initiatedBy": self.initiated_by,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms),
            "lossSLAAlertSent": False,
            "gainSLAAlertSent": False,
        }
        if self.notes is not None:
            record["notes"] = self.notes
        if self.cutoff_ms is not None:
            record["cutoffAt"] = iso_ms(self.cutoff_ms)
            record["disputed"] = self.disputed
        if self.reason is not None:
            record["reason"] = self.reason
        if self.finalized_ms is not None:
            record["finalizedAt"] = iso_ms(self.finalized_ms)
        if listed:
            record["transferDirection"] = self.transfer_direction
        record.update(copy.deepcopy(self.extra_fields))
        return record

    def render_transfer(self, transfer: Transfer) -> dict[str, Any]:
        completed = self.status == "completed"
        record: dict[str, Any] = {
            "id": transfer.id,
            "settlementId": self.id,
            "currency": transfer.currency,
            "quantity": transfer.quantity,
            "txIds": [f"sim-tx-{transfer.id[:8]}"] if completed else [],
            "status": _TRANSFER_STATUS[self.status],
            "usdValue": transfer.usd_value,
            "createdAt": iso_ms(transfer.created_ms),
            "updatedAt": iso_ms(self.transfer_updated_ms(transfer)),
            "settlementStatus": self.status,
        }
        if self.notes is not None:
            record["settlementNotes"] = self.notes
        if transfer.source_trading_account_id is not None:
            record["sourceTradingAccountId"] = transfer.source_trading_account_id
        if transfer.destination_trading_account_id is not None:
            record["destinationTradingAccountId"] = transfer.destination_trading_account_id
        return record

    def transfer_updated_ms(self, transfer: Transfer) -> int:
        """A transfer changes with its settlement: its ``updatedAt`` is the settlement's."""
        return max(self.updated_ms, transfer.created_ms)


class SettlementBook:
    """Partners, settlements and disputes, and the settlements' scheduled steps (guarded by the state's lock)."""

    def __init__(self) -> None:
        self.partners: dict[str, Partner] = {}
        self.settlements: dict[str, Settlement] = {}
        self.disputes: dict[str, Dispute] = {}
        self._schedule: list[tuple[float, int, str, str, str | None]] = []
        self._sequence = itertools.count()

    def clear(self) -> None:
        self.partners.clear()
        self.settlements.clear()
        self.disputes.clear()
        self._schedule.clear()

    def settlement(self, settlement_id: str) -> Settlement:
        """The settlement; KeyError naming the id when unknown."""
        found = self.settlements.get(settlement_id)
        if found is None:
            raise KeyError(f"unknown settlement {settlement_id}")
        return found

    def dispute(self, dispute_id: str) -> Dispute:
        found = self.disputes.get(dispute_id)
        if found is None:
            raise KeyError(f"unknown dispute {dispute_id}")
        return found

    def schedule(self, settlement_id: str, at_monotonic: float, status: str, reason: str | None) -> None:
        heapq.heappush(self._schedule, (at_monotonic, next(self._sequence), settlement_id, status, reason))

    def advance(self, now: float, clock: Clock) -> None:
        """Apply every step that is due, stamped with the simulator's time at which it was due."""
        if not self._schedule or self._schedule[0][0] > now:
            return  # the common case, on every allocation request too: no clock reading
        wall_at = clock.wall_at_monotonic()
        while self._schedule and self._schedule[0][0] <= now:
            due, _, settlement_id, status, reason = heapq.heappop(self._schedule)
            settlement = self.settlements.get(settlement_id)
            if settlement is None:
                continue
            if self.has_open_dispute(settlement_id):
                settlement.held.append((status, reason))
                continue
            self.set_status(settlement, status, reason, int(wall_at(due) * 1000))

    def has_open_dispute(self, settlement_id: str) -> bool:
        return any(d.settlement_id == settlement_id and not d.retracted for d in self.disputes.values())

    def release_held(self, settlement: Settlement, stamp_ms: int) -> None:
        """Apply the steps held back by a dispute, now that none is open."""
        held, settlement.held = settlement.held, []
        for status, reason in held:
            self.set_status(settlement, status, reason, stamp_ms)

    def cancel_steps(self, settlement_id: str) -> None:
        """Drop the settlement's scheduled and held steps (an explicit status change ends its timeline)."""
        self._schedule = [step for step in self._schedule if step[2] != settlement_id]
        heapq.heapify(self._schedule)
        self.settlement(settlement_id).held.clear()

    @staticmethod
    def set_status(settlement: Settlement, status: str, reason: str | None, stamp_ms: int) -> None:
        settlement.status = status
        settlement.reason = reason if status in ("failed", "rejected") else None
        settlement.updated_ms = max(stamp_ms, settlement.created_ms, settlement.updated_ms)
        final = status in ("completed", "rejected")
        settlement.finalized_ms = settlement.updated_ms if final else None

"""
The Python scripting API for settlements: partners with or without a dispute window, settlements and their
timelines, explicit status changes, disputes raised and retracted.

:class:`OESSimulator` inherits these methods; :class:`OESSimulatorClient` offers the same ones over HTTP.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.testing.simulator._common import (
    DEFAULT_CONNECTION_ID,
    DEFAULT_INITIATED_BY,
    DEFAULT_PARTNER_ID,
    is_uuid,
    iso_ms,
    parse_iso,
    to_ms,
)
from airflow_provider_oes.testing.simulator.settlement_state import (
    SETTLEMENT_STATUSES,
    Dispute,
    Partner,
    Settlement,
    Transfer,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from airflow_provider_oes.testing.simulator.state import State

#: the counterparty connection of settlements added without one
DEFAULT_COUNTERPARTY_CONNECTION_ID = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
DEFAULT_FAILED_REASON = "settlement processing failed; BitGo will retry it"
DEFAULT_REJECTED_REASON = "rejected by a BitGo admin"
#: the transfers of a settlement added without any: one leg each way, ``usdValue`` in both of its forms
DEFAULT_TRANSFERS: tuple[dict[str, Any], ...] = (
    {"currency": "ofctbtc", "quantity": "-100000000", "usd_value": "9500000"},
    {"currency": "ofctusdt", "quantity": "95000000000", "usd_value": 9500000},
)


def _check_settlement_status(status: str, name: str = "status") -> str:
    if status not in SETTLEMENT_STATUSES:
        raise ValueError(f"{name} must be one of {SETTLEMENT_STATUSES}, not {status!r}")
    return status


def _uuid_or_new(value: str | None, name: str) -> str:
    value = value or str(uuid.uuid4())
    if not is_uuid(value):
        raise ValueError(f"{name} must be a UUID, not {value!r}")
    return value


def _seconds(value: float | None, name: str) -> float | None:
    if value is not None and not value >= 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    return value


def _transfers(specs: Sequence[dict[str, Any]], created_ms: int) -> list[Transfer]:
    transfers = []
    for spec in specs:
        unknown = set(spec) - {
            "currency",
            "quantity",
            "usd_value",
            "source_trading_account_id",
            "destination_trading_account_id",
        }
        if unknown:
            raise ValueError(f"unknown transfer field(s) {sorted(unknown)}")
        quantity = spec.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, (str, int)) or str(quantity) in ("0", "-0"):
            raise ValueError(
                f"a transfer's quantity must be a non-zero signed integer (string or int), not {quantity!r}"
            )
        usd_value = spec.get("usd_value")
        if isinstance(usd_value, (bool, float)):
            raise ValueError(f"usd_value must be a string, an int or None (never a float), not {usd_value!r}")
        transfers.append(
            Transfer(
                id=str(uuid.uuid4()),
                currency=str(spec.get("currency", "ofctbtc")),
                quantity=str(quantity),
                usd_value=usd_value,
                created_ms=created_ms,
                source_trading_account_id=spec.get("source_trading_account_id"),
                destination_trading_account_id=spec.get("destination_trading_account_id"),
            )
        )
    return transfers


class SettlementScripting:
    """Settlement scripting over a :class:`State` (``self._state``)."""

    _state: State

    def add_partner(
        self,
        partner_id: str | None = None,
        name: str = "Sim Exchange",
        dispute_window_minutes: float | None = None,
        top_up_window_minutes: float | None = None,
        active: bool = True,
        extra_fields: dict[str, Any] | None = None,
    ) -> str:
        """
        Add (or replace) a partner; return its id.

        :param partner_id: UUID of the partner (default: a new one).
        :param name: ``name``.
        :param dispute_window_minutes: ``clientDisputeWindowMinutes``; None: the partner has no disputes (its
            settlements are v1: final at once).
        :param top_up_window_minutes: ``topUpWindowMinutes`` (omitted when None).
        :param active: ``active``.
        :param extra_fields: merged last into the JSON record.
        """
        partner_id = _uuid_or_new(partner_id, "partner_id")
        _seconds(dispute_window_minutes, "dispute_window_minutes")
        _seconds(top_up_window_minutes, "top_up_window_minutes")
        partner = Partner(
            id=partner_id,
            name=name,
            dispute_window_minutes=dispute_window_minutes,
            top_up_window_minutes=top_up_window_minutes,
            active=active,
            extra_fields=dict(extra_fields or {}),
        )
        with self._state.lock:
            self._state.settlements.partners[partner_id] = partner
        return partner_id

    def add_settlement(
        self,
        settlement_id: str | None = None,
        partner_id: str | None = None,
        final_status: str = "completed",
        final_reason: str | None = None,
        pending_for_seconds: float | None = None,
        failed_for_seconds: float | None = None,
        failed_reason: str = DEFAULT_FAILED_REASON,
        transfers: Sequence[dict[str, Any]] | None = None,
        settlement_type: str = "offchain",
        enterprise_id: str | None = None,
        connection_id: str | None = None,
        counterparty_connection_id: str | None = None,
        transfer_direction: str = "send-and-receive",
        external_id: str | None = None,
        initiated_by: str = DEFAULT_INITIATED_BY,
        notes: str | None = None,
        created_at: datetime | str | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> str:
        """
        Add a settlement and script its timeline; return its id.

        For a partner without a dispute window (v1) the settlement is created in ``failed`` (when
        ``failed_for_seconds`` is given) or directly in ``final_status``. For a partner with one (v2) it is
        created ``pending`` (with ``cutoffAt``) and stays so for ``pending_for_seconds`` (default: the dispute
        window plus the top-up window, in real minutes), then optionally ``failed`` for ``failed_for_seconds``
        (BitGo retries it), then ``final_status``. An open dispute holds every step back until retracted.

        :param settlement_id: UUID (default: a new one).
        :param partner_id: the partner (default :data:`DEFAULT_PARTNER_ID`, added without a window if unknown).
        :param final_status: ``completed``, ``rejected`` (on-chain only, as at BitGo), ``failed`` or ``pending``
            (stays there).
        :param final_reason: ``reason`` of a final ``rejected``/``failed`` (a default otherwise).
        :param pending_for_seconds: seconds a v2 settlement stays ``pending``.
        :param failed_for_seconds: seconds in ``failed`` before ``final_status``.
        :param failed_reason: ``reason`` while ``failed``.
        :param transfers: dicts of ``currency``, ``quantity`` (signed base units), ``usd_value`` (cents: a
            string, an int or None), optional trading account ids; default :data:`DEFAULT_TRANSFERS`.
        :param settlement_type: ``offchain`` or ``onchain``.
        :param enterprise_id: the client's enterprise (default: the simulator's); the caller becomes a member.
        :param connection_id: the client's connection, a party (``partyConnectionIds``).
        :param counterparty_connection_id: the counterparty connection (``counterpartyConnectionIds``).
        :param transfer_direction: ``send``, ``receive`` or ``send-and-receive`` (the list's field).
        :param external_id: the partner's id for it (default derived from the id).
        :param initiated_by: ``initiatedBy``.
        :param notes: ``notes`` (omitted when None).
        :param created_at: ``createdAt`` (default: the simulator's now, after the previous default one).
        :param extra_fields: merged last into the settlement's JSON record.
        """
        _check_settlement_status(final_status, "final_status")
        if final_status == "rejected" and settlement_type != "onchain":
            raise ValueError("only on-chain settlements are rejected (settlement_type='onchain')")
        if settlement_type not in ("onchain", "offchain"):
            raise ValueError(f"settlement_type must be 'onchain' or 'offchain', not {settlement_type!r}")
        _seconds(pending_for_seconds, "pending_for_seconds")
        _seconds(failed_for_seconds, "failed_for_seconds")
        settlement_id = _uuid_or_new(settlement_id, "settlement_id")
        partner_id = partner_id or DEFAULT_PARTNER_ID
        created = parse_iso(created_at) if isinstance(created_at, str) else created_at
        state = self._state
        book = state.settlements
        with state.lock:
            state.advance()
            if settlement_id in book.settlements:
                raise ValueError(f"settlement {settlement_id} already exists")
            if partner_id not in book.partners:
                if partner_id != DEFAULT_PARTNER_ID:
                    raise KeyError(f"unknown partner {partner_id}: add it with add_partner() first")
                book.partners[partner_id] = Partner(partner_id, "Sim Exchange", None, None)
            partner = book.partners[partner_id]
            created_ms = state.next_created_ms() if created is None else to_ms(created)
            state.note_created_ms(created_ms)
            settlement = Settlement(
                id=settlement_id,
                enterprise_id=enterprise_id or state.enterprise_id,
                partner_id=partner_id,
                connection_id=connection_id or DEFAULT_CONNECTION_ID,
                counterparty_connection_id=counterparty_connection_id or DEFAULT_COUNTERPARTY_CONNECTION_ID,
                external_id=external_id or f"sim-settlement-{settlement_id[:8]}",
                settlement_type=settlement_type,
                initiated_by=initiated_by,
                transfer_direction=transfer_direction,
                created_ms=created_ms,
                updated_ms=created_ms,
                transfers=_transfers(DEFAULT_TRANSFERS if transfers is None else transfers, created_ms),
                notes=notes,
                extra_fields=dict(extra_fields or {}),
            )
            book.settlements[settlement_id] = settlement
            state.members.add(settlement.enterprise_id)
            steps: list[tuple[float, str, str | None]] = []
            if partner.dispute_window_minutes is None:  # v1: processed at once
                wait = 0.0
            else:  # v2: pending through the dispute and top-up windows
                settlement.cutoff_ms = created_ms - 1
                windows = partner.dispute_window_minutes + (partner.top_up_window_minutes or 0)
                wait = windows * 60.0 if pending_for_seconds is None else pending_for_seconds
            if failed_for_seconds is not None:
                steps.append((wait, "failed", failed_reason))
                wait += failed_for_seconds
            if final_status != "pending":
                default = DEFAULT_REJECTED_REASON if final_status == "rejected" else DEFAULT_FAILED_REASON
                steps.append((wait, final_status, final_reason or default))
            now = time.monotonic()
            for seconds, status, reason in steps:
                if seconds == 0:
                    book.set_status(settlement, status, reason, created_ms)
                else:
                    book.schedule(settlement_id, now + seconds, status, reason)
        return settlement_id

    def set_settlement_status(self, settlement_id: str, status: str, reason: str | None = None) -> None:
        """
        Change a settlement's status now, ending its timeline (``updatedAt`` becomes the simulator's now).

        :param settlement_id: the settlement.
        :param status: ``pending``, ``failed``, ``completed`` or ``rejected``.
        :param reason: ``reason`` of ``failed``/``rejected`` (a default when None).
        """
        _check_settlement_status(status)
        state = self._state
        with state.lock:
            state.advance()
            settlement = state.settlements.settlement(settlement_id)
            state.settlements.cancel_steps(settlement_id)
            default = DEFAULT_REJECTED_REASON if status == "rejected" else DEFAULT_FAILED_REASON
            state.settlements.set_status(settlement, status, reason or default, state.clock.now_ms())

    def raise_dispute(
        self,
        settlement_id: str,
        expected_transfers: dict[str, str] | None = None,
        reason: str | None = "amounts do not match our records",
        user_id: str = DEFAULT_INITIATED_BY,
    ) -> str:
        """
        Raise a client dispute against a pending settlement inside its partner's dispute window (counted from
        ``createdAt``); return the dispute's id.

        The settlement gets ``disputed: true``; its next steps wait until the dispute is retracted.

        :param settlement_id: the disputed settlement.
        :param expected_transfers: currency -> the signed base-unit amount the client expected.
        :param reason: ``reason`` (omitted when None).
        :param user_id: ``userId``.
        """
        state = self._state
        with state.lock:
            state.advance()
            settlement = state.settlements.settlement(settlement_id)
            if settlement.status != "pending":
                raise ValueError(
                    f"settlement {settlement_id} is {settlement.status}: only a pending one can be disputed"
                )
            window = state.settlements.partners[settlement.partner_id].dispute_window_minutes
            if window is None:
                raise ValueError(f"the partner of settlement {settlement_id} has no disputes (no dispute window)")
            now = state.clock.now_ms()
            # the window counted from createdAt, as the provider computes it (docs/settlements.rst)
            closes_ms = settlement.created_ms + round(window * 60_000)
            if now > closes_ms:
                raise ValueError(f"the dispute window of settlement {settlement_id} closed at {iso_ms(closes_ms)}")
            dispute = Dispute(
                id=str(uuid.uuid4()),
                settlement_id=settlement_id,
                connection_id=settlement.connection_id,
                user_id=user_id,
                expected_transfers=dict(expected_transfers or {t.currency: t.quantity for t in settlement.transfers}),
                reason=reason,
                created_ms=now,
                updated_ms=now,
            )
            state.settlements.disputes[dispute.id] = dispute
            settlement.disputed = True
            settlement.updated_ms = max(settlement.updated_ms, now)
        return dispute.id

    def retract_dispute(self, dispute_id: str, reason: str | None = None) -> None:
        """
        Retract a dispute: the settlement goes ahead (steps that came due meanwhile apply now).

        :param dispute_id: the dispute.
        :param reason: ``retractedReason`` (omitted when None).
        """
        state = self._state
        with state.lock:
            state.advance()
            dispute = state.settlements.dispute(dispute_id)
            if dispute.retracted:
                raise ValueError(f"dispute {dispute_id} is already retracted")
            now = state.clock.now_ms()
            dispute.retracted, dispute.retracted_reason, dispute.retracted_ms, dispute.updated_ms = (
                True,
                reason,
                now,
                now,
            )
            settlement = state.settlements.settlement(dispute.settlement_id)
            if not state.settlements.has_open_dispute(settlement.id):
                state.settlements.release_held(settlement, now)

    def get_settlement_record(self, settlement_id: str) -> dict[str, Any]:
        """
        Return the settlement's current JSON record (API shape, as the GET by id shows it).

        :param settlement_id: the settlement.
        """
        with self._state.lock:
            self._state.advance()
            return self._state.settlements.settlement(settlement_id).render()

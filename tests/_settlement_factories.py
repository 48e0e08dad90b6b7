"""Records of the settlement routes in the spec note's shapes (``shared/spec/settlements.md``), for unit tests."""

from __future__ import annotations

from typing import Any

SETTLEMENT_ID = "5b1d7c3e-2f4a-4e6b-8c9d-0e1f2a3b4c5d"
PARTNER_ID = "0a4e2b6c-8d1f-4e3a-9b5c-7d6e5f4a3b2c"
CONNECTION_ID = "6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f"
DISPUTE_ID = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
CLOSURE_ID = "1d2c3b4a-5f6e-4d7c-9b8a-0f1e2d3c4b5a"
LATER_SETTLEMENT_ID = "7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b"


def settlement_record(status: str = "pending", **overrides: Any) -> dict[str, Any]:
    """A ``V1SettlementOutput`` of the given status with exactly the fields that status requires."""
    record: dict[str, Any] = {
        "id": SETTLEMENT_ID,
        "partnerId": PARTNER_ID,
        "externalId": "partner-settlement-0001",
        "status": status,
        "settlementType": "offchain",
        "reconciled": False,
        "initiatedBy": "partner-user-1",
        "createdAt": "2026-11-24T10:00:00.000Z",
        "updatedAt": "2026-11-24T10:05:00.000Z",
        "lossSLAAlertSent": False,
        "gainSLAAlertSent": False,
    }
    if status in ("failed", "rejected"):
        record["reason"] = f"{status} by BitGo: insufficient collateral"
    if status in ("completed", "rejected"):
        record["finalizedAt"] = "2026-11-24T11:00:00.000Z"
    record.update(overrides)
    return record


def transfer_record(number: int = 1, **overrides: Any) -> dict[str, Any]:
    """An item of ``MaskedV1SettlementTransfersOutput`` of the default settlement."""
    record: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "settlementId": SETTLEMENT_ID,
        "currency": "ofctbtc",
        "quantity": "-250000000",
        "txIds": [],
        "status": "pending",
        "usdValue": "2500000",
        "createdAt": "2026-11-24T10:00:00.000Z",
        "updatedAt": "2026-11-24T10:00:00.000Z",
        "settlementStatus": "pending",
    }
    record.update(overrides)
    return record


def closure_record(**overrides: Any) -> dict[str, Any]:
    """A ``DisputeClosureOutput`` with one adjusted transfer waiting for a later settlement."""
    record: dict[str, Any] = {
        "id": CLOSURE_ID,
        "closedBy": "admin",
        "userId": "bitgo-admin",
        "notes": "partner agreed",
        "adjustedSettlementTransfers": [
            {
                "id": "3a3a3a3a-3a3a-4a3a-8a3a-3a3a3a3a3a3a",
                "sourceTradingAccountId": "ta-source",
                "destinationTradingAccountId": "ta-dest",
                "destinationNetworkAccountId": CONNECTION_ID,
                "disputeClosureId": CLOSURE_ID,
                "currency": "ofctbtc",
                "quantity": "1000",
                "status": "pending_settlement_assignment",
                "createdAt": "2026-11-24T12:00:00.000Z",
                "updatedAt": "2026-11-24T12:00:00.000Z",
            }
        ],
        "createdAt": "2026-11-24T12:00:00.000Z",
        "status": "approved",
        "adjustedTransfers": {"ofctbtc": "1000"},
    }
    record.update(overrides)
    return record


def dispute_record(**overrides: Any) -> dict[str, Any]:
    """A ``V1DisputeOutput`` raised against the default settlement, open."""
    record: dict[str, Any] = {
        "id": DISPUTE_ID,
        "createdAt": "2026-11-24T10:10:00.000Z",
        "updatedAt": "2026-11-24T10:10:00.000Z",
        "connectionId": CONNECTION_ID,
        "disputedSettlementId": SETTLEMENT_ID,
        "userId": "client-user-1",
        "expectedTransfers": {"ofctbtc": "-249999000", "ofcteth": "12"},
        "retracted": False,
        "reason": "amount does not match our trades",
    }
    record.update(overrides)
    return record


def assigned_dispute_record(**overrides: Any) -> dict[str, Any]:
    """A ``V1AssignedDisputesWithClosureOutput`` item: closed, paid out in the default settlement."""
    return dispute_record(
        disputedSettlementId=LATER_SETTLEMENT_ID,
        disputeClosureId=CLOSURE_ID,
        disputeClosure=closure_record(),
        settledInSettlementId=SETTLEMENT_ID,
        **overrides,
    )


def partner_record(window: Any = 60, top_up: Any = 30, **overrides: Any) -> dict[str, Any]:
    """A ``Partner``; ``window=None`` leaves out ``clientDisputeWindowMinutes`` (a partner without disputes)."""
    record: dict[str, Any] = {
        "id": PARTNER_ID,
        "name": "Example Exchange",
        "institutionIdentifier": "example-exchange",
        "connectionKeySchema": "token",
        "active": True,
        "trustOrg": "BitGo Trust Company",
        "stablePartner": False,
    }
    if window is not None:
        record["clientDisputeWindowMinutes"] = window
    if top_up is not None:
        record["topUpWindowMinutes"] = top_up
    record.update(overrides)
    return record


def details_body(
    status: str = "pending", transfers: list[dict[str, Any]] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A ``V1ClientGetSettlementOkPayload`` (the GET of one settlement)."""
    body: dict[str, Any] = {
        "settlement": settlement_record(status),
        "settlementTransfers": [transfer_record(settlementStatus=status)] if transfers is None else transfers,
        "settlingDisputes": [],
        "settlementDisputes": [],
    }
    body.update(overrides)
    return body

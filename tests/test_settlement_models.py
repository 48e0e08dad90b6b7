"""Unit tests of the settlement models: every schema shape of the spec note, the status rules, hostile records."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_provider_oes.settlement_models import (
    FINAL_SETTLEMENT_STATUSES,
    AssignedDispute,
    Dispute,
    DisputeClosureStatus,
    ListedSettlement,
    Partner,
    Settlement,
    SettlementDetails,
    SettlementStatus,
    SettlementTransfer,
    SettlementTransferStatus,
    TransferDirection,
    dispute_window_end,
    is_settlement_final,
    is_settlement_success,
    top_up_window_end,
)
from tests._settlement_factories import (
    PARTNER_ID,
    SETTLEMENT_ID,
    assigned_dispute_record,
    details_body,
    dispute_record,
    partner_record,
    settlement_record,
    transfer_record,
)

# --- status rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "final", "success"),
    [
        ("pending", False, False),
        ("failed", False, False),  # BitGo: not terminal, it is retried
        ("completed", True, True),
        ("rejected", True, False),
        ("settled", False, False),  # unknown: never final, never success
        ("COMPLETED", False, False),
        ("", False, False),
    ],
)
def test_status_rules(status: str, final: bool, success: bool) -> None:
    assert is_settlement_final(status) is final
    assert is_settlement_success(status) is success


def test_final_statuses_are_completed_and_rejected_only() -> None:
    assert {SettlementStatus.COMPLETED, SettlementStatus.REJECTED} == FINAL_SETTLEMENT_STATUSES
    assert is_settlement_final(SettlementStatus.REJECTED)
    assert not is_settlement_final(SettlementStatus.FAILED)


# --- the four settlement shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "failed", "completed", "rejected"])
def test_each_settlement_shape_parses_and_round_trips(status: str) -> None:
    record = settlement_record(status, cutoffAt="2026-11-24T09:59:59.123Z", disputed=False, notes="n", rtId="rt-1")
    settlement = Settlement.model_validate(record)
    assert settlement.status is SettlementStatus(status)
    assert settlement.to_json_dict() == record
    assert Settlement.from_json_dict(settlement.to_json_dict()) == settlement
    assert settlement.is_final is (status in ("completed", "rejected"))
    assert settlement.is_completed is (status == "completed")
    assert settlement.is_failed is (status == "failed")
    assert settlement.is_rejected is (status == "rejected")
    if status in ("failed", "rejected"):
        assert settlement.reason
        assert "insufficient collateral" in settlement.describe()


@pytest.mark.parametrize(
    ("status", "missing"),
    [("failed", "reason"), ("completed", "finalizedAt"), ("rejected", "reason"), ("rejected", "finalizedAt")],
)
def test_a_shape_without_its_required_field_is_refused(status: str, missing: str) -> None:
    record = settlement_record(status)
    del record[missing]
    with pytest.raises(ValidationError, match=f"a {status} settlement must carry '{missing}'"):
        Settlement.model_validate(record)


def test_a_completed_settlement_with_null_finalized_at_is_refused() -> None:
    with pytest.raises(ValidationError, match="must carry 'finalizedAt'"):
        Settlement.model_validate(settlement_record("completed", finalizedAt=None))


def test_unknown_status_and_fields_are_kept_and_never_final() -> None:
    record = settlement_record("on_hold", settlementType="lightning", futureField={"nested": [1, "2"]})
    settlement = Settlement.model_validate(record)
    assert settlement.status == "on_hold"
    assert not settlement.has_known_status
    assert not settlement.is_final
    assert not settlement.is_completed
    assert settlement.settlement_type == "lightning"
    assert settlement.to_json_dict()["futureField"] == {"nested": [1, "2"]}


def test_listed_settlement_needs_its_transfer_direction() -> None:
    listed = ListedSettlement.model_validate({**settlement_record("pending"), "transferDirection": "send-and-receive"})
    assert listed.transfer_direction is TransferDirection.SEND_AND_RECEIVE
    assert listed.to_json_dict()["transferDirection"] == "send-and-receive"
    with pytest.raises(ValidationError, match="transferDirection"):
        ListedSettlement.model_validate(settlement_record("pending"))


@pytest.mark.parametrize(
    "override",
    [
        {"id": 5},
        {"status": None},
        {"reconciled": "false"},
        {"lossSLAAlertSent": 0},
        {"createdAt": "yesterday"},
        {"externalId": ""},
        {"disputed": "yes"},
    ],
)
def test_hostile_settlement_fields_are_refused(override: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settlement.model_validate({**settlement_record("pending"), **override})


# --- transfers: exact amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usd_value", "kept"),
    [
        ("2500000", "2500000"),
        (2500000, "2500000"),
        ("12.50", "12.50"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        (None, None),
    ],
)
def test_usd_value_in_cents_is_kept_exact_from_a_string_or_a_number(usd_value: Any, kept: str | None) -> None:
    transfer = SettlementTransfer.model_validate(transfer_record(usdValue=usd_value))
    assert transfer.usd_value == kept
    assert transfer.to_json_dict()["usdValue"] == kept
    assert transfer.usd_cents == (None if kept is None else Decimal(kept))


def test_usd_value_from_a_json_number_with_many_digits_loses_nothing() -> None:
    from airflow_provider_oes._api.bodies import load_json

    body = b'{"v": 9007199254740993.01}'  # beyond a float's 53 bits
    value = load_json(body, 1000, "test", exact=True)["v"]
    transfer = SettlementTransfer.model_validate(transfer_record(usdValue=value))
    assert transfer.usd_value == "9007199254740993.01"


@pytest.mark.parametrize(
    "usd_value", [12.5, True, -1, "-1", "1e3", "abc", "", " 12", Decimal("NaN"), Decimal("-1"), "1" * 31, {}, []]
)
def test_usd_value_that_is_not_exact_or_not_cents_is_refused(usd_value: Any) -> None:
    with pytest.raises(ValidationError, match="usdValue"):
        SettlementTransfer.model_validate(transfer_record(usdValue=usd_value))


@pytest.mark.parametrize("quantity", ["1", "-1", "250000000", "-123456789012345678901234567890123456789"])
def test_signed_quantity_is_kept_as_the_api_string(quantity: str) -> None:
    transfer = SettlementTransfer.model_validate(transfer_record(quantity=quantity))
    assert transfer.quantity == quantity
    assert transfer.to_json_dict()["quantity"] == quantity


@pytest.mark.parametrize("quantity", ["0", "-0", "+5", "01", "1.5", "1e8", " 1", 100, 1.5, None, "9" * 200])
def test_zero_unsigned_or_non_string_quantity_is_refused(quantity: Any) -> None:
    with pytest.raises(ValidationError):
        SettlementTransfer.model_validate(transfer_record(quantity=quantity))


def test_transfer_statuses_known_and_unknown() -> None:
    for status in SettlementTransferStatus:
        assert SettlementTransfer.model_validate(transfer_record(status=status.value)).status is status
    odd = SettlementTransfer.model_validate(transfer_record(status="reversed", txIds=["0xabc"]))
    assert odd.status == "reversed"
    assert not odd.is_completed
    assert SettlementTransfer.model_validate(transfer_record(status="completed")).is_completed


def test_transfer_optional_fields_round_trip() -> None:
    record = transfer_record(
        settlementNotes="n",
        disputeClosureId="1d2c3b4a-5f6e-4d7c-9b8a-0f1e2d3c4b5a",
        sourceTradingAccountId="ta-1",
        destinationTradingAccountId="ta-2",
        sourceNetworkAccountId="6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f",
        destinationNetworkAccountId="6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f",
        sourceClientName="***",
        destinationClientName="Me",
        sourceConnectionName="***",
        destinationConnectionName="main",
    )
    assert SettlementTransfer.model_validate(record).to_json_dict() == record


# --- disputes and the GET of one settlement -------------------------------------------------------------------


def test_dispute_open_retracted_and_closed() -> None:
    dispute = Dispute.model_validate(dispute_record())
    assert dispute.is_open
    assert dispute.expected_transfers == {"ofctbtc": "-249999000", "ofcteth": "12"}
    retracted = Dispute.model_validate(
        dispute_record(retracted=True, retractedBy="u", retractedAt="2026-11-24T10:20:00Z", retractedReason="ok")
    )
    assert not retracted.is_open
    assert retracted.retracted_reason == "ok"
    assigned = AssignedDispute.model_validate(assigned_dispute_record())
    assert not assigned.is_open
    assert assigned.dispute_closure.status is DisputeClosureStatus.APPROVED
    adjusted = assigned.dispute_closure.adjusted_settlement_transfers[0]
    assert adjusted.settlement_id is None
    assert adjusted.status is SettlementTransferStatus.PENDING_SETTLEMENT_ASSIGNMENT
    assert AssignedDispute.model_validate(assigned.to_json_dict()) == assigned


@pytest.mark.parametrize("missing", ["disputeClosureId", "disputeClosure", "settledInSettlementId"])
def test_an_assigned_dispute_needs_its_closure_and_settlement(missing: str) -> None:
    record = assigned_dispute_record()
    del record[missing]
    with pytest.raises(ValidationError):
        AssignedDispute.model_validate(record)


@pytest.mark.parametrize("amounts", [{"ofctbtc": "0"}, {"ofctbtc": 12}, {"ofctbtc": "1.5"}, ["1"]])
def test_dispute_expected_transfers_must_be_signed_base_unit_strings(amounts: Any) -> None:
    with pytest.raises(ValidationError):
        Dispute.model_validate(dispute_record(expectedTransfers=amounts))


@pytest.mark.parametrize("status", ["pending", "failed", "completed", "rejected"])
def test_settlement_details_of_every_status(status: str) -> None:
    body = details_body(
        status,
        settlementDisputes=[dispute_record()],
        settlingDisputes=[assigned_dispute_record()],
    )
    details = SettlementDetails.model_validate(body)
    assert details.settlement.status is SettlementStatus(status)
    assert details.to_json_dict() == body
    assert json.loads(json.dumps(details.to_json_dict())) == body


@pytest.mark.parametrize("missing", ["settlement", "settlementTransfers", "settlingDisputes", "settlementDisputes"])
def test_settlement_details_needs_its_four_keys(missing: str) -> None:
    body = details_body()
    del body[missing]
    with pytest.raises(ValidationError):
        SettlementDetails.model_validate(body)


def test_settlement_details_refuses_a_transfer_of_another_settlement() -> None:
    body = details_body(transfers=[transfer_record(settlementId="7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b")])
    with pytest.raises(ValidationError, match="belongs to settlement"):
        SettlementDetails.model_validate(body)


# --- partners and the dispute window --------------------------------------------------------------------------


def test_partner_with_a_window() -> None:
    partner = Partner.model_validate(partner_record(window=60, top_up=30, futureFlag=True))
    assert partner.has_disputes
    assert partner.client_dispute_window_minutes == 60
    assert partner.to_json_dict() == partner_record(window=60, top_up=30, futureFlag=True)
    settlement = Settlement.model_validate(settlement_record("pending"))
    assert dispute_window_end(settlement, partner) == datetime(2026, 11, 24, 11, 0, tzinfo=timezone.utc)
    assert top_up_window_end(settlement, partner) == datetime(2026, 11, 24, 11, 30, tzinfo=timezone.utc)


def test_partner_without_a_window_has_no_disputes() -> None:
    partner = Partner.model_validate(partner_record(window=None, top_up=None))
    assert not partner.has_disputes
    settlement = Settlement.model_validate(settlement_record("pending"))
    assert dispute_window_end(settlement, partner) is None
    assert top_up_window_end(settlement, partner) is None
    assert not Partner.model_validate(partner_record(clientDisputeWindowMinutes=None)).has_disputes


def test_a_zero_window_is_a_window_that_ends_at_creation() -> None:
    partner = Partner.model_validate(partner_record(window=0, top_up=None))
    settlement = Settlement.model_validate(settlement_record("pending"))
    assert partner.has_disputes
    assert dispute_window_end(settlement, partner) == settlement.created_at == top_up_window_end(settlement, partner)


def test_fractional_window_minutes_stay_exact() -> None:
    partner = Partner.model_validate(partner_record(window=Decimal("1.5"), top_up=None))
    settlement = Settlement.model_validate(settlement_record("pending"))
    assert partner.client_dispute_window_minutes == Decimal("1.5")
    assert (dispute_window_end(settlement, partner) - settlement.created_at).total_seconds() == 90  # type: ignore[operator]


@pytest.mark.parametrize("window", ["60", -1, True, 1.5, "x"])
def test_hostile_window_minutes_are_refused(window: Any) -> None:
    with pytest.raises(ValidationError):
        Partner.model_validate(partner_record(window=window))


def test_the_window_of_another_partner_is_refused() -> None:
    partner = Partner.model_validate(partner_record(id="11111111-1111-4111-8111-111111111111"))
    settlement = Settlement.model_validate(settlement_record("pending"))
    assert settlement.partner_id == PARTNER_ID
    assert settlement.id == SETTLEMENT_ID
    with pytest.raises(ValueError, match="is not the partner"):
        dispute_window_end(settlement, partner)

"""Unit tests of the allocation models and the status rules (no network)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests
import requests_mock as rm
from pydantic import ValidationError

from airflow_provider_oes.models import (
    SUCCESS_STATUS,
    TERMINAL_STATUSES,
    Allocation,
    AllocationAmount,
    AllocationStatus,
    AllocationType,
    PolicyResult,
    is_success,
    is_terminal,
)
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record

HUGE = "1234567890123456789012345678901234567890123456789"  # 49 digits: far beyond float precision


def test_every_field_snake_case() -> None:
    allocation = Allocation.from_json_dict(allocation_record())
    assert allocation.id == DEFAULT_ALLOCATION_ID
    assert allocation.amount == AllocationAmount(currency="ofctbtc", quantity="100000000")
    assert allocation.connection_id == "c0ffee00-0000-4000-8000-000000000001"
    assert allocation.client_external_id == "client-ext-1"
    assert allocation.partner_external_id == "partner-ext-1"
    assert allocation.initiated_by == "user-1"
    assert allocation.notes == "unit test allocation"
    assert allocation.created_at == datetime(2025, 11, 1, 10, 0, tzinfo=timezone.utc)
    assert allocation.updated_at == datetime(2025, 11, 1, 10, 5, tzinfo=timezone.utc)
    assert allocation.retriable is False
    assert allocation.reason == "waiting for the partner"
    assert allocation.status is AllocationStatus.RESERVED
    assert allocation.type is AllocationType.ALLOCATION
    assert allocation.evaluation_id is None
    assert allocation.pending_approval_id is None
    assert allocation.policy_result is None


def test_snake_case_names_accepted_as_input() -> None:
    allocation = Allocation(
        id=DEFAULT_ALLOCATION_ID,
        amount=AllocationAmount(currency="ofcteth", quantity="5"),
        connection_id="conn",
        client_external_id="c",
        initiated_by="u",
        created_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        updated_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        retriable=True,
        status="cleared",
        type="deallocation",
    )
    data = allocation.to_json_dict()
    assert data["connectionId"] == "conn"
    assert data["clientExternalId"] == "c"
    assert data["initiatedBy"] == "u"
    assert data["createdAt"] == "2025-01-01T00:00:00.000Z"
    assert data["type"] == "deallocation"
    assert "connection_id" not in data


def test_new_optional_fields() -> None:
    allocation = Allocation.from_json_dict(
        allocation_record(evaluationId="ev-1", pendingApprovalId="pa-1", policyResult="approved")
    )
    assert allocation.evaluation_id == "ev-1"
    assert allocation.pending_approval_id == "pa-1"
    assert allocation.policy_result is PolicyResult.APPROVED
    data = allocation.to_json_dict()
    assert data["evaluationId"] == "ev-1"
    assert data["pendingApprovalId"] == "pa-1"
    assert data["policyResult"] == "approved"

    rejected = Allocation.from_json_dict(allocation_record(policyResult="rejected"))
    assert rejected.policy_result is PolicyResult.REJECTED
    odd = Allocation.from_json_dict(allocation_record(policyResult="escalated"))
    assert odd.policy_result == "escalated"


@pytest.mark.parametrize("quantity", ["0", "1", HUGE, "9" * 78, "1" + "0" * 40])
def test_huge_quantities_round_trip_exactly_and_never_float(quantity: str) -> None:
    allocation = Allocation.from_json_dict(allocation_record(amount={"currency": "ofcteth", "quantity": quantity}))
    assert allocation.amount.quantity == quantity
    assert isinstance(allocation.amount.quantity, str)
    data = allocation.to_json_dict()
    assert data["amount"]["quantity"] == quantity
    assert isinstance(data["amount"]["quantity"], str)
    text = json.dumps(data)
    assert f'"quantity": "{quantity}"' in text
    again = Allocation.from_json_dict(json.loads(text))
    assert again.amount.quantity == quantity
    assert again == allocation


@pytest.mark.parametrize("quantity", [12.5, 100000000, 1e40, "-5", "1.5", "1e40", "", " 1", "0x10", True])
def test_quantity_must_be_a_base_unit_integer_string(quantity: object) -> None:
    with pytest.raises(ValidationError, match="quantity"):
        Allocation.from_json_dict(allocation_record(amount={"currency": "ofctbtc", "quantity": quantity}))


def test_unknown_extra_fields_kept_and_emitted() -> None:
    record = allocation_record(futureField={"nested": [1, "two"]}, riskScore="7")
    record["amount"]["decimals"] = 8
    allocation = Allocation.from_json_dict(record)
    assert allocation.model_extra == {"futureField": {"nested": [1, "two"]}, "riskScore": "7"}
    assert allocation.amount.model_extra == {"decimals": 8}
    data = allocation.to_json_dict()
    assert data["futureField"] == {"nested": [1, "two"]}
    assert data["riskScore"] == "7"
    assert data["amount"]["decimals"] == 8


def test_to_json_dict_is_the_api_shape_and_round_trips() -> None:
    record = allocation_record(evaluationId="ev-1", extraThing=True)
    allocation = Allocation.from_json_dict(record)
    data = allocation.to_json_dict()
    assert data == record
    assert Allocation.from_json_dict(json.loads(json.dumps(data))) == allocation


def test_optional_fields_absent_stay_absent() -> None:
    record = allocation_record(partnerExternalId=..., notes=..., reason=...)
    data = Allocation.from_json_dict(record).to_json_dict()
    assert data == record
    assert "partnerExternalId" not in data
    assert "evaluationId" not in data


def test_null_reason_kept_as_null() -> None:
    data = Allocation.from_json_dict(allocation_record(reason=None, status="cleared")).to_json_dict()
    assert "reason" in data
    assert data["reason"] is None


def test_non_utc_timestamp_keeps_offset() -> None:
    allocation = Allocation.from_json_dict(allocation_record(createdAt="2025-11-01T12:00:00+02:00"))
    assert allocation.created_at == datetime(2025, 11, 1, 10, 0, tzinfo=timezone.utc)
    assert allocation.to_json_dict()["createdAt"] == "2025-11-01T12:00:00.000+02:00"


@pytest.mark.parametrize(
    ("wire", "emitted"),
    [
        ("2025-11-01T10:00:00.123Z", "2025-11-01T10:00:00.123Z"),
        ("2025-11-01T10:00:00Z", "2025-11-01T10:00:00.000Z"),
        ("2025-11-01T10:00:00.123456Z", "2025-11-01T10:00:00.123456Z"),
        ("2025-11-01T10:00:00.5+05:30", "2025-11-01T10:00:00.500+05:30"),
        ("2025-11-01T10:00:00.000001", "2025-11-01T10:00:00.000001"),
    ],
)
def test_timestamps_lose_nothing(wire: str, emitted: str) -> None:
    allocation = Allocation.from_json_dict(allocation_record(createdAt=wire))
    data = allocation.to_json_dict()
    assert data["createdAt"] == emitted
    assert Allocation.from_json_dict(json.loads(json.dumps(data))) == allocation


@pytest.mark.parametrize(
    ("status", "terminal", "cleared", "released", "known"),
    [
        ("reserved", False, False, False, True),
        ("cleared", True, True, False, True),
        ("released", True, False, True, True),
        ("pending_review", False, False, False, False),
        ("CLEARED", False, False, False, False),
        ("", False, False, False, False),
    ],
)
def test_status_rules(status: str, terminal: bool, cleared: bool, released: bool, known: bool) -> None:
    allocation = Allocation.from_json_dict(allocation_record(status=status))
    assert allocation.is_terminal is terminal
    assert allocation.is_cleared is cleared
    assert allocation.is_released is released
    assert allocation.has_known_status is known
    assert is_terminal(status) is terminal
    assert is_success(status) is cleared


def test_unknown_status_kept_as_string_never_success() -> None:
    allocation = Allocation.from_json_dict(allocation_record(status="pending_review"))
    assert allocation.status == "pending_review"
    assert not isinstance(allocation.status, AllocationStatus)
    assert not allocation.is_cleared
    assert not allocation.is_terminal
    assert allocation.to_json_dict()["status"] == "pending_review"
    assert "pending_review" in allocation.describe()


def test_unknown_type_kept_as_string() -> None:
    allocation = Allocation.from_json_dict(allocation_record(type="rebalance"))
    assert allocation.type == "rebalance"
    assert allocation.to_json_dict()["type"] == "rebalance"


def test_enum_helpers() -> None:
    assert {AllocationStatus.CLEARED, AllocationStatus.RELEASED} == TERMINAL_STATUSES
    assert SUCCESS_STATUS is AllocationStatus.CLEARED
    assert is_success(AllocationStatus.CLEARED)
    assert not is_success(AllocationStatus.RELEASED)
    assert is_terminal(AllocationStatus.RELEASED)
    assert not is_terminal(AllocationStatus.RESERVED)
    assert str(AllocationStatus.CLEARED) == "cleared"
    assert str(AllocationType.DEALLOCATION) == "deallocation"
    assert str(PolicyResult.APPROVED) == "approved"


def test_describe_names_type_id_amount_status_reason() -> None:
    text = Allocation.from_json_dict(allocation_record(reason="partner rejected", status="released")).describe()
    assert text == f"allocation {DEFAULT_ALLOCATION_ID} of 100000000 ofctbtc is released (reason: partner rejected)"
    no_reason = Allocation.from_json_dict(allocation_record(reason=None, status="cleared")).describe()
    assert no_reason == f"allocation {DEFAULT_ALLOCATION_ID} of 100000000 ofctbtc is cleared"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ...),
        ("id", ""),
        ("amount", ...),
        ("status", ...),
        ("status", 3),
        ("retriable", "yes"),
        ("createdAt", "yesterday"),
        ("clientExternalId", 5),
    ],
)
def test_invalid_records_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Allocation.from_json_dict(allocation_record(**{field: value}))


def test_model_is_frozen() -> None:
    allocation = Allocation.from_json_dict(allocation_record())
    with pytest.raises(ValidationError):
        allocation.status = AllocationStatus.CLEARED


def test_model_parses_a_requests_mock_response() -> None:
    body = allocation_body(status="cleared", amount={"currency": "ofcteth", "quantity": HUGE}, newField=1)
    with rm.Mocker() as mocker:
        mocker.get("https://app.bitgo-test.com/x", text=json.dumps(body))
        data = requests.get("https://app.bitgo-test.com/x", timeout=1).content
    allocation = Allocation.from_json_dict(json.loads(data)["allocation"])
    assert allocation.amount.quantity == HUGE
    assert allocation.to_json_dict() == body["allocation"]

"""SettlementStatusSensor in poke mode against the simulator over HTTP (reschedule mode: the example DAG's tests;
deferrable mode: ``tests/triggers/test_settlement_trigger.py`` and ``tests/integration/test_deferrable_settlement.py``)."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_provider_oes.exceptions import (
    OESNotFoundError,
    SettlementFailedError,
    SettlementRejectedError,
)
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.sensors.settlement import SettlementStatusSensor

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration

WINDOW_PARTNER = "3c3c3c3c-3c3c-4c3c-8c3c-3c3c3c3c3c3c"


def _sensor(settlement_id: str, **kwargs: Any) -> SettlementStatusSensor:
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 10)
    return SettlementStatusSensor(task_id="wait", settlement_id=settlement_id, **kwargs)


def test_completed_succeeds_with_the_settlement_and_its_transfers_as_xcom(
    oes_simulator: OESSimulator, oes_connection: str
) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    settlement_id = oes_simulator.add_settlement(
        partner_id=WINDOW_PARTNER,
        pending_for_seconds=0.3,
        transfers=[
            {"currency": "ofctbtc", "quantity": "-98765432109876543210987654321", "usd_value": 12345678901234567}
        ],
    )
    result = _sensor(settlement_id).execute({})
    assert set(result) == {"settlement", "settlementTransfers", "settlingDisputes", "settlementDisputes"}
    assert result["settlement"]["status"] == "completed"
    assert result["settlement"]["finalizedAt"].endswith("Z")
    assert result["settlementTransfers"][0]["quantity"] == "-98765432109876543210987654321"
    assert result["settlementTransfers"][0]["usdValue"] == "12345678901234567"
    assert oes_simulator.request_count >= 2  # waited while pending


def test_rejected_fails_without_retries_naming_the_reason(oes_simulator: OESSimulator, oes_connection: str) -> None:
    settlement_id = oes_simulator.add_settlement(
        final_status="rejected", settlement_type="onchain", final_reason="AML hit"
    )
    with pytest.raises(SettlementRejectedError, match="AML hit") as caught:
        _sensor(settlement_id).execute({})
    assert isinstance(caught.value, AirflowFailException)
    assert oes_simulator.request_count == 1
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value)


def test_rejected_with_soft_fail_skips(oes_simulator: OESSimulator, oes_connection: str) -> None:
    settlement_id = oes_simulator.add_settlement(final_status="rejected", settlement_type="onchain")
    with pytest.raises(AirflowSkipException):
        _sensor(settlement_id, soft_fail=True).execute({})


def test_failed_is_not_final_warns_with_the_reason_and_waits_for_the_retry(
    oes_simulator: OESSimulator, oes_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settlement_id = oes_simulator.add_settlement(failed_for_seconds=0.4, failed_reason="ledger timeout")
    result = _sensor(settlement_id).execute({})
    assert result["settlement"]["status"] == "completed"
    out = capsys.readouterr().out
    assert "ledger timeout" in out
    assert "not final" in out
    assert oes_simulator.request_count >= 2


def test_failed_forever_times_out(oes_simulator: OESSimulator, oes_connection: str) -> None:
    settlement_id = oes_simulator.add_settlement(final_status="failed", final_reason="stuck")
    with pytest.raises(AirflowSensorTimeout):
        _sensor(settlement_id, timeout=0.3).execute({})
    assert oes_simulator.request_count >= 2


def test_fail_on_failed_fails_fast(oes_simulator: OESSimulator, oes_connection: str) -> None:
    settlement_id = oes_simulator.add_settlement(failed_for_seconds=30, failed_reason="ledger timeout")
    with pytest.raises(SettlementFailedError, match="ledger timeout") as caught:
        _sensor(settlement_id, fail_on_failed=True).execute({})
    assert isinstance(caught.value, AirflowFailException)
    assert oes_simulator.request_count == 1
    with pytest.raises(AirflowSkipException):
        _sensor(settlement_id, fail_on_failed=True, soft_fail=True).execute({})


def test_unknown_status_is_never_success(
    oes_simulator: OESSimulator, oes_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settlement_id = oes_simulator.add_settlement()
    oes_simulator.inject_fault("unknown_status", count=2)
    result = _sensor(settlement_id).execute({})
    assert result["settlement"]["status"] == "completed"
    assert oes_simulator.request_count == 3
    assert "'on_hold', which this provider does not know" in capsys.readouterr().out


def test_transient_errors_keep_waiting_and_permanent_ones_fail(
    oes_simulator: OESSimulator, oes_connection: str, no_sleep: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    settlement_id = oes_simulator.add_settlement()
    oes_simulator.inject_fault("503", count=10)  # more than one poke's retries: pokes give up, a later one succeeds
    result = _sensor(settlement_id, poke_interval=0.0).execute({})
    assert result["settlement"]["id"] == settlement_id
    assert oes_simulator.request_count == 11
    assert "Could not check settlement" in capsys.readouterr().out
    with pytest.raises(OESNotFoundError):
        _sensor("00000000-0000-4000-8000-000000000000").execute({})


def test_templated_fields_and_a_pending_poke(oes_simulator: OESSimulator, oes_connection: str) -> None:
    assert SettlementStatusSensor.template_fields == ("settlement_id", "enterprise_id", "oes_conn_id")
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    settlement_id = oes_simulator.add_settlement(partner_id=WINDOW_PARTNER, final_status="pending")
    oes_simulator.raise_dispute(settlement_id)
    result = _sensor(settlement_id).poke({})
    assert not result.is_done
    assert result.xcom_value is None


def test_deferrable_defaults_to_airflows_default_deferrable() -> None:
    import inspect

    default = inspect.signature(SettlementStatusSensor.__init__).parameters["deferrable"].default
    allocation_default = inspect.signature(AllocationStatusSensor.__init__).parameters["deferrable"].default
    assert default is allocation_default  # both read [operators] default_deferrable when the module loads
    assert SettlementStatusSensor(task_id="wait", settlement_id="x", deferrable=True).deferrable
    assert not SettlementStatusSensor(task_id="wait2", settlement_id="x", deferrable=False).deferrable

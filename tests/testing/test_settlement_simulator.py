"""The simulator's settlement routes over HTTP: filters, paging, statuses over time, disputes, faults, limits."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_oes.exceptions import OESInvalidRequestError, OESRateLimitError, OESResponseError
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.settlement_models import SettlementStatus
from airflow_provider_oes.testing.simulator import DEFAULT_PARTNER_ID, OESSimulatorClient

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

WINDOW_PARTNER = "3c3c3c3c-3c3c-4c3c-8c3c-3c3c3c3c3c3c"


def _get(sim: OESSimulator, route: str, params: Any = None) -> requests.Response:
    url = f"{sim.url}/api/network/v1/enterprises/{sim.enterprise_id}/{route}"
    return requests.get(url, params=params, headers={"Authorization": f"Bearer {sim.token}"}, timeout=10)


def _wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def hook(oes_connection: str) -> OESHook:
    return OESHook(oes_connection)


def test_v1_settlement_is_final_at_once_with_exact_transfers(oes_simulator: OESSimulator, hook: OESHook) -> None:
    settlement_id = oes_simulator.add_settlement(
        transfers=[
            {"currency": "ofctbtc", "quantity": "-123456789012345678901234567890", "usd_value": "100.25"},
            {"currency": "ofcteth", "quantity": "7", "usd_value": 9007199254740993},
        ]
    )
    details = hook.get_settlement(settlement_id)
    assert details.settlement.status is SettlementStatus.COMPLETED
    assert details.settlement.finalized_at == details.settlement.created_at
    assert details.settlement.cutoff_at is None
    transfers = {t.currency: t for t in details.settlement_transfers}
    assert transfers["ofctbtc"].quantity == "-123456789012345678901234567890"
    assert transfers["ofctbtc"].usd_value == "100.25"
    assert transfers["ofcteth"].usd_value == "9007199254740993"
    assert all(t.status == "completed" and t.tx_ids for t in transfers.values())


def test_v2_settlement_is_pending_through_its_windows_then_fails_then_completes(
    oes_simulator: OESSimulator, hook: OESHook
) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60, top_up_window_minutes=30)
    settlement_id = oes_simulator.add_settlement(
        partner_id=WINDOW_PARTNER, pending_for_seconds=0.3, failed_for_seconds=0.3, failed_reason="node down"
    )
    first = hook.get_settlement(settlement_id).settlement
    assert first.status is SettlementStatus.PENDING
    assert first.cutoff_at is not None
    assert first.disputed is False
    _wait_for(lambda: oes_simulator.get_settlement_record(settlement_id)["status"] == "failed")
    failed = hook.get_settlement(settlement_id).settlement
    assert failed.reason == "node down"
    assert not failed.is_final
    _wait_for(lambda: oes_simulator.get_settlement_record(settlement_id)["status"] == "completed")
    done = hook.get_settlement(settlement_id)
    assert done.settlement.finalized_at is not None
    assert done.settlement.reason is None
    assert done.settlement.updated_at > first.updated_at
    assert {t.settlement_status for t in done.settlement_transfers} == {SettlementStatus.COMPLETED}
    partner = hook.get_partner(WINDOW_PARTNER)
    assert (partner.client_dispute_window_minutes, partner.top_up_window_minutes) == (60, 30)


def test_a_default_v2_wait_is_the_two_windows(oes_simulator: OESSimulator, hook: OESHook) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=1, top_up_window_minutes=1)
    settlement_id = oes_simulator.add_settlement(partner_id=WINDOW_PARTNER)
    time.sleep(0.2)
    assert hook.get_settlement(settlement_id).settlement.status is SettlementStatus.PENDING


def test_a_dispute_holds_the_settlement_until_retracted(oes_simulator: OESSimulator, hook: OESHook) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=5)
    settlement_id = oes_simulator.add_settlement(partner_id=WINDOW_PARTNER, pending_for_seconds=0.2)
    dispute_id = oes_simulator.raise_dispute(settlement_id, {"ofctbtc": "-99999999"}, reason="short by 1")
    time.sleep(0.4)
    held = hook.get_settlement(settlement_id)
    assert held.settlement.status is SettlementStatus.PENDING
    assert held.settlement.disputed is True
    assert [d.id for d in held.settlement_disputes] == [dispute_id]
    assert held.settlement_disputes[0].is_open
    assert [s.id for s in hook.list_settlements(only_show_disputed=True)] == [settlement_id]
    assert list(hook.list_settlement_disputes(closed=True)) == []
    oes_simulator.retract_dispute(dispute_id, reason="found it")
    details = hook.get_settlement(settlement_id)
    assert details.settlement.status is SettlementStatus.COMPLETED
    retracted = details.settlement_disputes[0]
    assert retracted.retracted
    assert retracted.retracted_reason == "found it"
    assert [d.id for d in hook.list_settlement_disputes(settlement_ids=[settlement_id], closed=False)] == [dispute_id]


def test_rejected_is_on_chain_only_and_carries_its_reason(oes_simulator: OESSimulator, hook: OESHook) -> None:
    with pytest.raises(ValueError, match="only on-chain"):
        oes_simulator.add_settlement(final_status="rejected")
    settlement_id = oes_simulator.add_settlement(final_status="rejected", settlement_type="onchain", final_reason="AML")
    settlement = hook.get_settlement(settlement_id).settlement
    assert settlement.is_rejected
    assert settlement.reason == "AML"
    assert settlement.finalized_at is not None


def test_list_filters_with_repeated_keys_and_paging(oes_simulator: OESSimulator, hook: OESHook) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    completed = [oes_simulator.add_settlement() for _ in range(5)]
    pending = [oes_simulator.add_settlement(partner_id=WINDOW_PARTNER) for _ in range(2)]
    failed = oes_simulator.add_settlement(failed_for_seconds=600)
    assert [s.id for s in hook.list_settlements(page_size=2)] == [*completed, *pending, failed]
    assert [s.id for s in hook.list_settlements(statuses=["pending", "failed"])] == [*pending, failed]
    assert [s.id for s in hook.list_settlements(partner_ids=[WINDOW_PARTNER])] == pending
    assert [s.id for s in hook.list_settlements(settlement_ids=[failed, completed[1]])] == [completed[1], failed]
    assert all(s.transfer_direction == "send-and-receive" for s in hook.list_settlements())
    raw = _get(oes_simulator, "clients/settlements", [("statuses", "pending"), ("statuses", "failed")])
    assert [s["id"] for s in raw.json()["settlements"]] == [*pending, failed]
    assert DEFAULT_PARTNER_ID in {p.id for p in hook.list_partners()}


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("clients/settlements", {"statuses": "pending,failed"}),  # a comma list is not an array here
        ("clients/settlements", {"settlementIds": "not-a-uuid"}),
        ("clients/settlements", {"pageSize": "0"}),
        ("clients/settlements", {"onlyShowDisputed": "yes"}),
        ("clients/settlements/not-a-uuid", None),
        ("clients/settlementTransfers", {"sortField": "createdAt"}),
        ("clients/settlementTransfers", {"settlementUpdatedBefore": "tomorrow"}),
        ("clients/settlement/disputes", {"closed": "1"}),
        ("partners", {"active": "maybe"}),
    ],
)
def test_a_bad_parameter_is_a_400_with_an_empty_body(
    oes_simulator: OESSimulator, hook: OESHook, route: str, params: Any
) -> None:
    answer = _get(oes_simulator, route, params)
    assert answer.status_code == 400
    assert answer.json() == {}


def test_a_page_size_over_the_limit_is_refused_locally_and_an_unknown_status_is_kept(
    oes_simulator: OESSimulator, hook: OESHook
) -> None:
    # the hook refuses what the simulator would answer 400 to, before sending it
    with pytest.raises(OESInvalidRequestError, match="page_size"):
        list(hook.list_settlements(page_size=1001))
    settlement_id = oes_simulator.add_settlement()
    oes_simulator.inject_fault("unknown_status")
    assert hook.get_settlement(settlement_id).settlement.status == "on_hold"


def test_transfers_sorted_by_updated_at_with_a_settlement_updated_range(
    oes_simulator: OESSimulator, hook: OESHook
) -> None:
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    early = oes_simulator.add_settlement(transfers=[{"currency": "ofctbtc", "quantity": "1", "usd_value": "1"}])
    late = oes_simulator.add_settlement(
        partner_id=WINDOW_PARTNER, transfers=[{"currency": "ofctbtc", "quantity": "-2", "usd_value": None}]
    )
    time.sleep(0.01)
    oes_simulator.set_settlement_status(late, "completed")
    newest_first = list(hook.list_settlement_transfers(sort_field="updatedAt", sort_direction="DESC"))
    assert [t.settlement_id for t in newest_first] == [late, early]
    assert newest_first[0].usd_value is None
    since = hook.get_settlement(late).settlement.updated_at
    assert [t.settlement_id for t in hook.list_settlement_transfers(settlement_updated_on_or_after=since)] == [late]
    assert [t.settlement_id for t in hook.list_settlement_transfers(settlement_updated_before=since)] == [early]
    assert [
        t.quantity for t in hook.list_settlement_transfers(settlement_statuses=["completed"], currencies=["ofctbtc"])
    ] == [
        "1",
        "-2",
    ]


def test_get_settlement_pages_the_simulator_transfers(oes_simulator: OESSimulator, hook: OESHook) -> None:
    legs = [{"currency": f"ofct{i}", "quantity": str(i + 1), "usd_value": str(i)} for i in range(7)]
    settlement_id = oes_simulator.add_settlement(transfers=legs)
    oes_simulator.reset_counts()
    details = hook.get_settlement(settlement_id, page_size=3)
    assert [t.currency for t in details.settlement_transfers] == [leg["currency"] for leg in legs]
    assert oes_simulator.request_count == 3
    only = hook.get_settlement(settlement_id, currencies=["ofct2", "ofct5"])
    assert [t.quantity for t in only.settlement_transfers] == ["3", "6"]


def test_unknown_or_foreign_settlement_is_a_404(oes_simulator: OESSimulator, hook: OESHook) -> None:
    from airflow_provider_oes.exceptions import OESNotFoundError

    foreign = oes_simulator.add_settlement(enterprise_id="other-enterprise")
    with pytest.raises(OESNotFoundError, match="party to it"):
        hook.get_settlement(foreign)


def test_faults_and_the_rate_limit_apply_to_settlement_routes(
    oes_simulator: OESSimulator, oes_connection: str, no_sleep: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    settlement_id = oes_simulator.add_settlement()
    hook = OESHook(oes_connection)
    oes_simulator.inject_fault("503", count=1)
    assert hook.get_settlement(settlement_id).settlement.is_completed  # retried past the 503
    oes_simulator.inject_fault("wrong_id", allocation_id=settlement_id)  # another id, claimed completed
    with pytest.raises(OESResponseError, match="belongs to settlement"):
        hook.get_settlement(settlement_id)
    oes_simulator.inject_fault("wrong_types")
    with pytest.raises(OESResponseError, match="record 0"):
        list(hook.list_settlement_transfers())
    oes_simulator.set_rate_limit(1, 60.0)
    oes_simulator.reset_counts()
    assert _get(oes_simulator, "partners").status_code == 200
    limited = _get(oes_simulator, "partners")
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    with pytest.raises(OESRateLimitError):
        OESHook(oes_connection).get_settlement(settlement_id)


def test_the_control_api_drives_settlements(oes_simulator: OESSimulator, hook: OESHook) -> None:
    client = OESSimulatorClient(oes_simulator.url)
    try:
        partner_id = client.add_partner(dispute_window_minutes=30)
        settlement_id = client.add_settlement(partner_id=partner_id, final_status="pending")
        dispute_id = client.raise_dispute(settlement_id, reason="check")
        assert client.get_settlement_record(settlement_id)["disputed"] is True
        client.retract_dispute(dispute_id)
        client.set_settlement_status(settlement_id, "failed", reason="retrying")
        assert hook.get_settlement(settlement_id).settlement.reason == "retrying"
        with pytest.raises(KeyError, match="unknown settlement"):
            client.get_settlement_record("00000000-0000-4000-8000-000000000000")
        with pytest.raises(ValueError, match="final_status must be one of"):
            client.add_settlement(final_status="done")
    finally:
        client.close()


def test_a_dispute_needs_a_partner_with_a_window_that_is_still_open(oes_simulator: OESSimulator, hook: OESHook) -> None:
    from datetime import timedelta

    v1 = oes_simulator.add_settlement(final_status="pending")
    with pytest.raises(ValueError, match="has no disputes"):
        oes_simulator.raise_dispute(v1)
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=30)
    created = oes_simulator.now() - timedelta(minutes=31)
    late = oes_simulator.add_settlement(partner_id=WINDOW_PARTNER, final_status="pending", created_at=created)
    with pytest.raises(ValueError, match=r"dispute window of settlement .* closed at"):
        oes_simulator.raise_dispute(late)
    on_time = oes_simulator.add_settlement(
        partner_id=WINDOW_PARTNER, final_status="pending", created_at=oes_simulator.now() - timedelta(minutes=29)
    )
    assert oes_simulator.raise_dispute(on_time)
    assert list(hook.list_settlement_disputes(settlement_ids=[late])) == []

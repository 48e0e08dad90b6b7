"""The asset helpers: URI convention, the outlet ``extra``, and reading allocations from either event shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset, AssetAlias

from airflow_provider_oes.assets import (
    allocations_asset_uri,
    allocations_from_asset_event,
    attach_allocation_to_outlets,
    outlet_extra,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.models import Allocation
from tests._factories import allocation_record


def _allocation(**overrides: Any) -> Allocation:
    return Allocation.model_validate(allocation_record(**{"status": "cleared", "reason": None, **overrides}))


def test_uri_convention_is_accepted_by_airflow() -> None:
    uri = allocations_asset_uri("5f1c0e1a9b8c", "cleared")
    assert uri == "oes://5f1c0e1a9b8c/allocations/cleared"
    assert Asset(uri=uri).uri == uri  # Airflow keeps it as is (no normalizer rewrites it)


@pytest.mark.parametrize(("enterprise", "status"), [("..", "cleared"), ("ent", "cle ared"), ("ent", ""), ("", "x")])
def test_uri_refuses_bad_parts(enterprise: str, status: str) -> None:
    with pytest.raises(OESInvalidRequestError):
        allocations_asset_uri(enterprise, status)


def test_outlet_extra_carries_exactly_the_fields_downstream_needs() -> None:
    extra = outlet_extra(
        _allocation(amount={"currency": "ofcteth", "quantity": "12345678901234567890123"}),
        enterprise_id="ent1",
        oes_conn_id="oes_default",
    )
    assert extra == {
        "allocation": {
            "id": "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
            "type": "allocation",
            "status": "cleared",
            "amount": {"currency": "ofcteth", "quantity": "12345678901234567890123"},
            "connectionId": "c0ffee00-0000-4000-8000-000000000001",
            "reason": None,
        },
        "enterprise_id": "ent1",
        "oes_conn_id": "oes_default",
    }


class _Events(dict):
    """``context["outlet_events"]``: an accessor per outlet with a mutable ``extra``."""

    def __missing__(self, key: Any) -> Any:
        value = self[key] = SimpleNamespace(extra={})
        return value


def test_attach_updates_each_asset_outlet_and_skips_aliases() -> None:
    gated, audit, alias = Asset(uri="oes://e/allocations/a"), Asset(uri="oes://e/allocations/b"), AssetAlias("x")
    events = _Events()
    events[gated].extra["set_by_dag_author"] = 1
    task = SimpleNamespace(outlets=[gated, audit, alias])
    attached = attach_allocation_to_outlets(
        task, {"outlet_events": events}, _allocation(), enterprise_id="e", oes_conn_id="c"
    )
    assert attached == 2
    assert events[gated].extra["set_by_dag_author"] == 1  # kept
    assert events[gated].extra["allocation"]["status"] == "cleared"
    assert events[audit].extra["allocation"]["id"] == "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
    assert alias not in events


def test_attach_without_outlets_or_outlet_events_does_nothing() -> None:
    assert (
        attach_allocation_to_outlets(
            SimpleNamespace(outlets=[]), {}, _allocation(), enterprise_id=None, oes_conn_id="c"
        )
        == 0
    )
    task = SimpleNamespace(outlets=[Asset(uri="oes://e/allocations/a")])
    assert attach_allocation_to_outlets(task, {}, _allocation(), enterprise_id=None, oes_conn_id="c") == 0


def test_reads_allocations_from_trigger_events_and_task_outlets() -> None:
    record = allocation_record(status="cleared")
    from_trigger = SimpleNamespace(extra={"from_trigger": True, "payload": {"allocations": [record, record]}})
    from_task = SimpleNamespace(extra=outlet_extra(_allocation(), enterprise_id="e", oes_conn_id="c"))
    assert allocations_from_asset_event(from_trigger) == [record, record]
    assert allocations_from_asset_event(from_task)[0]["id"] == record["id"]
    assert allocations_from_asset_event(from_trigger.extra) == [record, record]  # the extra dict itself
    assert allocations_from_asset_event(SimpleNamespace(extra={})) == []
    assert allocations_from_asset_event(SimpleNamespace(extra={"from_trigger": True, "payload": "x"})) == []
    assert allocations_from_asset_event(SimpleNamespace(extra=None)) == []
    assert allocations_from_asset_event(SimpleNamespace(extra={"payload": {"allocations": [record]}})) == []

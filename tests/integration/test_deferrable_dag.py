"""The deferrable sensor end to end: ``dag.test()`` defers, runs the trigger in process, and resumes.

Against the simulator over real HTTP. ``dag.test()`` runs each deferred task's trigger with ``asyncio.run``
(a fresh event loop per trigger) and resumes the task with only ``event=...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from tests.integration._dagrun import load_example_dag as _dag
from tests.integration._dagrun import task_instances
from tests.integration._dagrun import xcom_return_value as _xcom

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]

LIST_SUFFIX = "/clients/allocations"


def test_deferrable_fleet_all_cleared(airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str) -> None:
    quantities = ["1000", "98765432109876543210987654321", "5"]
    ids = [oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1, quantity=q) for q in quantities]

    dag_run = _dag("example_oes_deferrable_fleet").test(run_conf={"allocation_ids": ids})

    assert str(dag_run.state) == "success"
    tis = task_instances(dag_run)
    assert {k: str(ti.state) for k, ti in tis.items()} == {
        "list_allocation_ids": "success",
        "wait_for_allocation[0]": "success",
        "wait_for_allocation[1]": "success",
        "wait_for_allocation[2]": "success",
        "settle_cleared": "success",
    }
    for index, allocation_id in enumerate(ids):
        pushed = _xcom(dag_run, "wait_for_allocation", index)
        assert pushed == oes_simulator.get_record(allocation_id)
        assert pushed["status"] == "cleared"
    assert _xcom(dag_run, "settle_cleared") == {
        "cleared": 3,
        "totals": {"ofctbtc": str(sum(int(q) for q in quantities))},
    }
    # Each sensor: one single GET in execute() (reserved), then deferred; the trigger saw it cleared
    # through the list endpoint (the enterprise's change feed, the default). So the wait went through the trigger.
    requests = oes_simulator.requests
    singles = [r for r in requests if not r[1].endswith(LIST_SUFFIX)]
    lists = [r for r in requests if r[1].endswith(LIST_SUFFIX)]
    assert sorted(r[1].rsplit("/", 1)[-1] for r in singles) == sorted(ids)
    _only_feed_or_our_ids(lists, ids)


def test_deferrable_fleet_released_fails_that_task_with_reason(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    cleared = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1)
    released = oes_simulator.add_allocation(
        final_status="released", reserved_for_reads=1, final_reason="partner rejected the allocation"
    )

    dag_run = _dag("example_oes_deferrable_fleet").test(run_conf={"allocation_ids": [cleared, released]})

    assert str(dag_run.state) == "failed"
    tis = task_instances(dag_run)
    assert str(tis["wait_for_allocation[0]"].state) == "success"
    assert str(tis["wait_for_allocation[1]"].state) == "failed"
    assert str(tis["settle_cleared"].state) == "upstream_failed"
    assert tis["wait_for_allocation[1]"].try_number == 1  # released is final: no retry
    assert _xcom(dag_run, "wait_for_allocation", 0)["status"] == "cleared"
    assert _xcom(dag_run, "wait_for_allocation", 1) is None
    # The released allocation was seen through the trigger (list endpoint), after one reserved single GET.
    lists = [r for r in oes_simulator.requests if r[1].endswith(LIST_SUFFIX)]
    _only_feed_or_our_ids(lists, [cleared, released])


def _only_feed_or_our_ids(lists: list[tuple[str, str, str, float]], ids: list[str]) -> None:
    """The triggers asked the list endpoint: with the change feed's query (the default strategy), and by id
    only about these allocations (a check the feed could not vouch for)."""
    queries = [parse_qs(r[2]) for r in lists]
    feed = [q for q in queries if q.get("sortField") == ["updatedAt"]]
    assert feed, queries
    assert all(q["statuses"] == ["cleared,released"] and q["sortDirection"] == ["DESC"] for q in feed)
    by_id = [q for q in queries if "allocationIds" in q]
    assert len(feed) + len(by_id) == len(queries)
    assert {i for q in by_id for i in q["allocationIds"][0].split(",")} <= set(ids)

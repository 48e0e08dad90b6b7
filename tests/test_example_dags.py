"""The example DAGs as a user copies them: numbered, parseable, and within BitGo's rate limit.

The sync path (``mode="poke"`` / ``"reschedule"``) has no limiter shared between sensors: each one sends one
request per ``poke_interval`` from its worker. What bounds an example's rate is its sensors' ``poke_interval``,
how many of them may run at once (one per unmapped sensor, ``max_active_tis_per_dagrun`` for a mapped one)
and ``max_active_runs``. Deferred sensors and asset watchers go through the triggerer's rate limiter instead.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest

from tests._paths import EXAMPLE_DAGS

BITGO_REQUESTS_PER_MINUTE = 360  # per access token, across every process that uses it
EXAMPLES = sorted(EXAMPLE_DAGS.glob("example_*.py"))


def _dags(path: Any) -> list[Any]:
    from airflow.sdk import DAG

    spec = importlib.util.spec_from_file_location(f"oes_budget_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [value for value in vars(module).values() if isinstance(value, DAG)]


def _sync_requests_per_minute(dag: Any) -> float:
    """The most requests per minute the DAG's poke/reschedule-mode sensors can send, all runs together."""
    from airflow.sdk import conf
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
    from airflow_provider_oes.sensors.settlement import SettlementStatusSensor

    sensors = (AllocationStatusSensor, SettlementStatusSensor)

    per_run = 0.0
    for task in dag.tasks:
        if isinstance(task, MappedOperator):
            if not issubclass(task.operator_class, sensors):
                continue
            kwargs = task.partial_kwargs
            if kwargs.get("deferrable") or kwargs.get("start_from_trigger"):
                continue
            concurrent = kwargs.get("max_active_tis_per_dagrun")
            assert concurrent, f"{dag.dag_id}.{task.task_id}: a mapped poke-mode sensor needs max_active_tis_per_dagrun"
            per_run += concurrent * 60 / float(kwargs.get("poke_interval", 60))
        elif isinstance(task, sensors) and not task.deferrable:
            per_run += 60 / float(task.poke_interval)
    runs = dag.max_active_runs or conf.getint("core", "max_active_runs_per_dag")
    return runs * per_run


def test_every_example_is_numbered_once_in_order() -> None:
    numbers = []
    for path in EXAMPLES:
        first_line = path.read_text().splitlines()[0]
        match = re.match(r'"""Example (\d+): ', first_line)
        assert match, f"{path.name}: the docstring must start with 'Example N: '"
        numbers.append(int(match.group(1)))
    assert sorted(numbers) == list(range(1, len(EXAMPLES) + 1))


WATCHING_EXAMPLES = ("example_oes_event_driven_settlement", "example_oes_settlement_review")


def _parseable_here(path: Any) -> bool:
    """Examples 7 and 10's watchers need Airflow 3.3 (they refuse to be built on 3.2); they have no sensors."""
    from airflow.triggers.base import BaseEventTrigger

    if path.stem not in WATCHING_EXAMPLES:
        assert "AssetWatcher(" not in path.read_text(), f"{path.name}: add it to WATCHING_EXAMPLES"
        return True
    assert "StatusSensor" not in path.read_text()
    return hasattr(BaseEventTrigger, "create_shared_stream_producer")


def test_examples_stay_within_bitgos_rate_limit_on_the_sync_path() -> None:
    rates = {
        dag.dag_id: _sync_requests_per_minute(dag) for path in EXAMPLES if _parseable_here(path) for dag in _dags(path)
    }
    print(f"\nsync-path requests per minute at most: {rates}")
    assert sum(1 for rate in rates.values() if rate > 0) >= 4  # the poke and reschedule examples are counted
    # Every example deployed together on one token, each at its own concurrency limits.
    assert sum(rates.values()) <= BITGO_REQUESTS_PER_MINUTE / 2  # half the token left to the triggerer


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_docs_markers_pair_up(path: Any) -> None:
    text = path.read_text()
    starts = re.findall(r"# \[START (\w+)\]", text)
    ends = re.findall(r"# \[END (\w+)\]", text)
    assert starts, f"{path.name} has no [START ...] marker for the docs"
    assert starts == ends

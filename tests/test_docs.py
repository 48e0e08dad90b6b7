"""What the README and the docs claim, checked against the code.

The docs themselves are built with warnings as errors by ``scripts/test.sh`` (a literalinclude marker that
moved or a broken reference fails it); this module checks the facts a build cannot: extras and their
defaults, template fields, defaults, versions, links, and that the README's first DAG is a real one.
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import pytest

from tests._paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
README = (REPO_ROOT / "README.md").read_text()


def _rst(name: str) -> str:
    return (DOCS / f"{name}.rst").read_text()


def test_readme_is_a_landing_page() -> None:
    lines = README.splitlines()
    assert 100 <= len(lines) <= 170
    # The contributor commands, the test command unchanged.
    assert "scripts/demo.sh" in README
    assert "\nscripts/test.sh    # ruff, mypy" in README


def test_readme_links_exist() -> None:
    links = re.findall(r"\]\(((?:docs|example_dags)[^)#]*|CHANGELOG\.md)\)", README)
    assert len(links) >= 10
    missing = [link for link in links if not (REPO_ROOT / link).exists()]
    assert missing == []


def test_airflow_floor_and_extras_as_declared() -> None:
    requires = importlib.metadata.requires("airflow-provider-oes") or []
    floor = [r for r in requires if r.startswith("apache-airflow") and "extra ==" not in r]
    assert floor == ["apache-airflow>=3.2.2"]
    assert "Apache Airflow 3.2.2 or later" in README
    assert "3.2+" not in README
    assert "3.2.2 (the floor: ``apache-airflow>=3.2.2``)" in _rst("installation")
    extras = set(importlib.metadata.metadata("airflow-provider-oes").get_all("Provides-Extra") or [])
    assert "testing" in extras
    for text in (README, _rst("installation"), _rst("testing")):
        for extra in re.findall(r"airflow-provider-oes\[(\w+)\]", text):
            assert extra in extras, extra


def test_readme_first_dag_is_a_triggerable_dag_within_the_rate_limit() -> None:
    from airflow.sdk import DAG, Param

    from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
    from tests.test_example_dags import BITGO_REQUESTS_PER_MINUTE, _sync_requests_per_minute

    code = README.split("## A first DAG", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
    dags = [v for v in namespace.values() if isinstance(v, DAG)]
    if not dags:  # the DAG is not bound to a name: find it through the sensor
        dags = [namespace["wait"].dag]
    dag = dags[0]
    assert isinstance(dag.params.get_param("allocation_id"), Param)  # the UI's trigger form asks for it
    sensor = dag.get_task("wait_for_allocation")
    assert isinstance(sensor, AllocationStatusSensor)
    assert sensor.allocation_id == "{{ params.allocation_id }}"
    assert 0 < _sync_requests_per_minute(dag) <= BITGO_REQUESTS_PER_MINUTE / 10


def test_connection_page_lists_every_extra_with_its_default() -> None:
    from airflow_provider_oes.get_provider_info import EXTRA_FIELDS, POLL_STRATEGIES

    page = _rst("connection")
    rows = dict(re.findall(r"\* - ``(\w+)``\n     - (.+)\n", page))
    assert set(rows) == set(EXTRA_FIELDS)
    for name, extra in EXTRA_FIELDS.items():
        if name == "poll_strategy":
            expected = f"``{POLL_STRATEGIES[0]}``"
        elif extra.default is None:
            expected = "none"
        elif isinstance(extra.default, bool):
            expected = f"``{str(extra.default).lower()}``"
        else:
            expected = f"``{extra.default:g}``"
        assert rows[name] == expected, name


def test_template_fields_as_documented() -> None:
    from airflow_provider_oes.operators.allocation import GetAllocationOperator, ListAllocationsOperator
    from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

    templated = ("allocation_id", "enterprise_id", "oes_conn_id")
    assert tuple(AllocationStatusSensor.template_fields) == templated
    assert tuple(GetAllocationOperator.template_fields) == templated
    assert "``allocation_id``, ``enterprise_id`` and ``oes_conn_id`` (all three templated)" in _rst("sensor")
    operators = _rst("operators")
    listed = operators.split("Templated: ", 1)[1].split(".\nNot templated: ", 1)
    documented = re.findall(r"``(\w+)``", listed[0])
    assert documented == list(ListAllocationsOperator.template_fields)
    not_templated = re.findall(r"``(\w+)``", listed[1].split("\n\n", 1)[0])
    assert {"sort_field", "sort_direction", "page_size", "max_records"} <= set(not_templated)
    assert not set(not_templated) & set(ListAllocationsOperator.template_fields)


def test_documented_defaults() -> None:
    import inspect

    from airflow.sdk import BaseSensorOperator

    from airflow_provider_oes.operators.allocation import ListAllocationsOperator
    from airflow_provider_oes.triggers.event import AllocationEventTrigger

    assert inspect.signature(BaseSensorOperator.__init__).parameters["poke_interval"].default == 60
    assert "``poke_interval``, default 60 s" in _rst("sensor")
    assert "default ``poke_interval`` of 60 s" in _rst("scale")
    params = inspect.signature(ListAllocationsOperator.__init__).parameters
    assert params["page_size"].default == 100
    assert params["max_records"].default == 10_000
    assert "(1 to 1,000, default 100)" in _rst("operators")
    assert "(default 10,000;" in _rst("operators")
    event = inspect.signature(AllocationEventTrigger.__init__).parameters
    assert event["poll_interval"].default == 10
    assert tuple(event["statuses"].default) == ("cleared",)
    assert "``poll_interval``: seconds between polls, default 10" in _rst("triggers")


def test_feed_capacity_claim() -> None:
    # "about 11 changes per second at the default poke_interval of 60 s, about 28 at 5 s": one page of
    # feed_page_size rows covers one interval plus the overlap.
    from airflow_provider_oes.get_provider_info import EXTRA_FIELDS

    page, overlap = EXTRA_FIELDS["feed_page_size"].default, EXTRA_FIELDS["feed_overlap"].default
    assert int(page / (60 + overlap)) == 11
    assert int(page / (5 + overlap)) == 28
    assert "about 11 changes per second at the sensor's" in _rst("scale")
    assert "about 28 at 5 s" in _rst("scale")


@pytest.mark.parametrize("page", sorted(p.stem for p in DOCS.glob("*.rst")))
def test_every_page_is_in_the_toctree(page: str) -> None:
    if page == "index":
        return
    assert f"\n   {page}\n" in _rst("index")


def test_how_to_pages_include_tested_examples() -> None:
    includes = []
    for page in ("sensor", "operators", "triggers", "event_driven", "settlements", "settlement_events"):
        includes += re.findall(r"literalinclude:: \.\./(example_dags/\w+\.py)", _rst(page))
    examples = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "example_dags").glob("example_*.py")}
    assert set(includes) == examples  # every example shown, nothing but examples


def test_dashboard_queries_only_metrics_the_code_sends() -> None:
    import json

    from airflow_provider_oes._metrics import names as metric_names

    dashboard = json.loads((DOCS / "_static" / "oes-grafana-dashboard.json").read_text())
    names = {v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str) and v.startswith("oes.")}
    targets = [t["target"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m.group(1) for t in targets for m in re.finditer(r"airflow\.(oes\.[a-z_]+(?:\.[a-z_]+)?)", t)}
    assert used
    unknown = {u for u in used if not any(u == n or u.startswith(n + ".") for n in names)}
    assert unknown == set()

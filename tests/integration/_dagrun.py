"""Helpers to run an example DAG with ``dag.test()`` and read what it left in the metadata DB."""

from __future__ import annotations

import importlib.util
from typing import Any

from tests._paths import EXAMPLE_DAGS


def load_example(module: str) -> Any:
    """Import ``example_dags/<module>.py`` (from the configured DAGs folder, so ``dag.test()`` syncs it)."""
    spec = importlib.util.spec_from_file_location(f"oes_example_{module}", EXAMPLE_DAGS / f"{module}.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_example_dag(module: str) -> Any:
    """The ``dag`` of ``example_dags/<module>.py`` (see :func:`load_example`)."""
    return load_example(module).dag


def task_instances(dag_run: Any) -> dict[str, Any]:
    """The run's task instances by ``task_id`` (``task_id[i]`` for mapped ones)."""
    return {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): ti for ti in dag_run.get_task_instances()
    }


def task_states(dag_run: Any) -> dict[str, str | None]:
    """The run's task states by ``task_id`` (``task_id[i]`` for mapped ones)."""
    return {key: (str(ti.state) if ti.state else None) for key, ti in task_instances(dag_run).items()}


def xcom_return_value(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """The ``return_value`` XCom a task pushed in this run, or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                map_indexes=map_index,
                key="return_value",
            )
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None

"""Run example DAG 1 (settlement gating) end to end against the local OES simulator.

Started by ``scripts/demo.sh``; everything happens on 127.0.0.1 with a SQLite metadata DB in a
temporary AIRFLOW_HOME, so nothing on this machine is changed and nothing goes to BitGo.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = REPO / "example_dags"


def _prepare_airflow_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="oes-demo-airflow-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )
    print(f"[demo] AIRFLOW_HOME={home} (SQLite); creating the metadata DB ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return home


def _load_dag(module: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(module, EXAMPLE_DAGS / f"{module}.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.dag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--reserved-reads", type=int, default=2, help="how many checks see the allocation still reserved"
    )
    args = parser.parse_args()

    _prepare_airflow_home()

    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        allocation_id = sim.add_allocation(
            final_status="cleared",
            reserved_for_reads=args.reserved_reads,
            currency="ofctbtc",
            quantity="250000000",
            reserved_reason="awaiting partner confirmation",
        )
        os.environ["AIRFLOW_CONN_OES_DEFAULT"] = json.dumps(
            {"conn_type": "oes", "host": sim.url, "password": sim.token, "extra": {"enterprise_id": sim.enterprise_id}}
        )
        print(
            f"[demo] OES simulator on {sim.url}; allocation {allocation_id} stays reserved for "
            f"{args.reserved_reads} checks, then clears",
            flush=True,
        )
        dag = _load_dag("example_oes_settlement_gating")
        dag_run = dag.test(run_conf={"allocation_id": allocation_id})

        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(
                XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")
            ).all()
            xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        print("\n" + "=" * 72)
        print(f"DAG run {dag_run.dag_id} finished: {dag_run.state}")
        for task_id, state in sorted(states.items()):
            print(f"  {task_id:<22} {state}")
        print(f"Requests the sensor sent to the simulator: {sim.request_count}")
        print("The allocation that gated settlement (XCom of wait_for_allocation):")
        print(json.dumps(xcoms.get("wait_for_allocation"), indent=2))
        print("What settle booked (XCom of settle):")
        print(json.dumps(xcoms.get("settle"), indent=2))
        print("=" * 72)
        return 0 if str(dag_run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main())

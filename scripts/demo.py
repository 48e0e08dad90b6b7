"""Run example DAG 1 (settlement gating) end to end against the local OES simulator.

Started by ``scripts/demo.sh``; everything happens on 127.0.0.1 with a SQLite metadata DB in a
temporary AIRFLOW_HOME, so nothing on this machine is changed and nothing goes to BitGo.

By default the DAG runs in this process with ``dag.test()``: the terminal shows the allocation waited for,
each check the sensor made and the status it saw, and the result; Airflow's own log lines go to a file whose
name it prints. With ``--full-stack`` the real Airflow
components run as separate processes (api-server with the UI, scheduler, dag-processor, triggerer;
LocalExecutor) on a private PostgreSQL server started for the demo (Debian's ``postgresql`` package; it is
stopped and its data removed afterwards; ``--db sqlite`` or ``OES_STACK_DB=sqlite`` uses a SQLite file
instead), and the run is triggered and followed through Airflow's REST API; the sensor waits in the
triggerer (``[operators] default_deferrable = True``). Add ``--keep-running`` to look around the UI
afterwards (Ctrl-C stops everything).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterator

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
    with (home / "demo.log").open("a") as log:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=log, stderr=log)
    return home


@contextlib.contextmanager
def _airflow_output_to(log_path: Path) -> Iterator[TextIO]:
    """Send everything written to this process's stdout and stderr (Airflow's log lines) to ``log_path``;
    yield a stream to the real terminal for what the demo itself shows."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    with log_path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


_SENSOR_SAW = re.compile(r"(?:Still waiting|Allocation cleared): (.*?) \[airflow\.task")


def _follow_checks(log_path: Path, out: TextIO, stop: threading.Event) -> None:
    """Show each check of the sensor as it logs it (what it saw), from Airflow's log file."""
    checks = 0
    with log_path.open() as log:
        while True:
            stopping = stop.is_set()
            for line in log.readlines():
                match = _SENSOR_SAW.search(line)
                if match:
                    checks += 1
                    print(f"[demo]   check {checks}: {match.group(1)}", file=out, flush=True)
            if stopping:
                return
            stop.wait(0.2)


def _load_dag(module: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(module, EXAMPLE_DAGS / f"{module}.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.dag


def _full_stack(reserved_reads: int, keep_running: bool, database: str) -> int:
    """Run the demo under real Airflow processes and follow it through the REST API."""
    import time

    sys.path.insert(0, str(REPO))  # the process harness lives in the repository's tests/ package
    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests.harness.fullstack import GATING_DAG, FullStack, oes_connection_json
    from tests.harness.postgres import PostgresUnavailable

    with OESSimulator(port=0) as sim:
        allocation_id = sim.add_allocation(
            final_status="cleared",
            reserved_for_reads=reserved_reads,
            currency="ofctbtc",
            quantity="250000000",
            reserved_reason="awaiting partner confirmation",
        )
        print(f"[demo] OES simulator on {sim.url}; allocation {allocation_id}", flush=True)
        what = "a private PostgreSQL server" if database == "postgres" else "a SQLite file"
        print(f"[demo] metadata DB: {what}", flush=True)
        try:
            stack = FullStack(oes_connection_json(sim.url, sim.token, sim.enterprise_id), database=database)
        except PostgresUnavailable as exc:
            print(f"[demo] cannot start PostgreSQL: {exc}\n[demo] (or run with --db sqlite)", file=sys.stderr)
            return 2
        print("[demo] starting api-server, scheduler, dag-processor and triggerer (about 20-60 s) ...", flush=True)
        with stack:
            stack.start(dag_ids=[GATING_DAG])
            print(f"[demo] Airflow UI: {stack.url}/dags/{GATING_DAG}  (logs: {stack.stack.logs})", flush=True)
            run_id = stack.trigger(GATING_DAG, {"allocation_id": allocation_id})
            print(f"[demo] triggered run {run_id} through the REST API", flush=True)
            last = None
            deadline = time.monotonic() + 300
            while (state := stack.run_state(GATING_DAG, run_id)) not in {"success", "failed"}:
                sensor = stack.task_states(GATING_DAG, run_id).get("wait_for_allocation")
                if sensor is not None and sensor.state != last:
                    last = sensor.state
                    print(f"[demo]   wait_for_allocation: {last}", flush=True)
                if time.monotonic() > deadline:
                    print(stack.describe(GATING_DAG, run_id))
                    return 1
                time.sleep(0.5)
            states = stack.task_states(GATING_DAG, run_id)
            print("\n" + "=" * 72)
            print(f"DAG run {GATING_DAG} finished: {state}")
            for key, ti in sorted(states.items()):
                print(f"  {key:<22} {ti.state}")
            print(f"Requests sent to the simulator (worker + triggerer): {sim.request_count}")
            print("The allocation that gated settlement (XCom of wait_for_allocation, via the REST API):")
            print(json.dumps(stack.xcom(GATING_DAG, run_id, "wait_for_allocation"), indent=2))
            print("What settle booked (XCom of settle):")
            print(json.dumps(stack.xcom(GATING_DAG, run_id, "settle"), indent=2))
            print("=" * 72)
            if keep_running:
                print(f"[demo] still running: {stack.url}/dags/{GATING_DAG}/runs  (Ctrl-C to stop)", flush=True)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    print("\n[demo] stopping", flush=True)
            return 0 if state == "success" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--reserved-reads", type=int, default=2, help="how many checks see the allocation still reserved"
    )
    parser.add_argument(
        "--full-stack",
        action="store_true",
        help="run real Airflow processes (UI, scheduler, dag-processor, triggerer) instead of dag.test()",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="with --full-stack: keep Airflow running until Ctrl-C"
    )
    parser.add_argument(
        "--db",
        choices=("postgres", "sqlite"),
        default=None,
        help="with --full-stack: the metadata DB (default: $OES_STACK_DB, else postgres)",
    )
    args = parser.parse_args()
    if args.keep_running and not args.full_stack:
        parser.error("--keep-running only applies with --full-stack")
    if args.db and not args.full_stack:
        parser.error("--db only applies with --full-stack (the plain demo always uses SQLite)")
    if args.full_stack:
        sys.path.insert(0, str(REPO))
        from tests.harness.airflow_stack import default_database

        try:
            database = args.db or default_database()
        except ValueError as exc:
            parser.error(str(exc))
        return _full_stack(args.reserved_reads, args.keep_running, database)

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
        # The example checks every 10 s (within BitGo's rate limit with room to spare); the demo every 2 s.
        dag.get_task("wait_for_allocation").poke_interval = 2
        log_path = Path(os.environ["AIRFLOW_HOME"]) / "demo.log"
        print(f"[demo] running DAG oes_settlement_gating; Airflow's full log: {log_path}", flush=True)
        stop = threading.Event()
        with _airflow_output_to(log_path) as terminal:
            follower = threading.Thread(target=_follow_checks, args=(log_path, terminal, stop), daemon=True)
            follower.start()
            try:
                dag_run = dag.test(run_conf={"allocation_id": allocation_id})
            finally:
                stop.set()
                follower.join()

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
        print(f"Airflow's full log of the run: {log_path}")
        return 0 if str(dag_run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main())

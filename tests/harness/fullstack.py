"""The example DAGs under real Airflow 3 components: api-server, scheduler, dag-processor and triggerer.

:class:`FullStack` composes :class:`~tests.harness.airflow_stack.AirflowStack` (throw-away AIRFLOW_HOME, a
private PostgreSQL server as the metadata DB unless SQLite is asked for, LocalExecutor, every process in its
own group and stopped with its descendants) with the settings a test run needs, and adds what the tests and
``scripts/demo.py --full-stack`` do through Airflow's public REST API: trigger a DAG run with ``conf``, wait
for task-instance and run states, read XComs and task logs. It runs one or more triggerers, can SIGKILL
one and start new ones, and knows each triggerer's job id (the ``triggerer_id`` of the triggers it holds).

Every component gets the same environment, including ``AIRFLOW_CONN_OES_DEFAULT`` pointing at the OES
simulator, so the worker (sync hook) and the triggerer (async poller) reach the same simulator.

Settings chosen for tests, and why:

* ``[operators] default_deferrable = True``: example 1's sensor does not pass ``deferrable``, so it takes
  Airflow's documented default; this is what puts it in the triggerer
  (example 2 passes ``deferrable=False``, so it stays in reschedule mode).
* ``[triggerer] triggerer_health_check_threshold = 5``: a SIGKILLed triggerer's triggers move to a new one
  only once its last heartbeat is older than this (30 s by default).
* ``[workers] min_heartbeat_interval = 1``: the task supervisor notices its child's exit at its next tick;
  a shorter tick narrows the reschedule race of apache/airflow#71172.
* ``[core] default_task_retries = 1`` with a 1 s delay: the one retry DESIGN.md allows for that race.
  ``AllocationReleasedError`` is an ``AirflowFailException``, so a released allocation is never retried.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.harness.airflow_stack import AirflowStack, Component

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO_ROOT / "example_dags"

GATING_DAG = "oes_settlement_gating"
RESCHEDULE_DAG = "oes_reschedule_released"
MAPPED_DAG = "oes_mapped_allocations"
FLEET_DAG = "oes_deferrable_fleet"
EXAMPLE_DAG_IDS = (GATING_DAG, RESCHEDULE_DAG, MAPPED_DAG, FLEET_DAG)

FINISHED_RUN_STATES = frozenset({"success", "failed"})
FINISHED_TI_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})

STACK_ENV: dict[str, str] = {
    # Sensors that do not pass ``deferrable`` wait in the triggerer (the documented default).
    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    # 20 mapped sensors must all run at once (the default per-DAG limit is 16); few worker slots on 2 cores.
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
    "AIRFLOW__CORE__PARALLELISM": "24",
    # One retry, 1 s later, for the reschedule race apache/airflow#71172 (see the module docstring).
    "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "1",
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    # Find a dead triggerer fast, and let the new one pick its triggers up quickly.
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}


class StackTimeout(AssertionError):
    """A wait on the stack ran out of time (the message carries what was seen last)."""


def oes_connection_json(url: str, token: str, enterprise_id: str, batch_size: int | None = None) -> str:
    """The ``AIRFLOW_CONN_OES_DEFAULT`` value (JSON form) for a simulator.

    :param url: The simulator's base URL.
    :param token: Its access token.
    :param enterprise_id: Its enterprise id.
    :param batch_size: The connection's ``batch_size`` extra, if not the default.
    """
    extra: dict[str, Any] = {"enterprise_id": enterprise_id}
    if batch_size is not None:
        extra["batch_size"] = batch_size
    return json.dumps({"conn_type": "oes", "host": url, "password": token, "extra": extra})


@dataclass(frozen=True)
class TaskState:
    """One task instance as the REST API shows it.

    :param task_id: Task id.
    :param map_index: Map index (-1 when not mapped).
    :param state: State, or ``None`` when not yet scheduled.
    :param try_number: Try number.
    """

    task_id: str
    map_index: int
    state: str | None
    try_number: int

    @property
    def key(self) -> str:
        """``task_id`` or ``task_id[map_index]``."""
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


class FullStack:
    """api-server, scheduler, dag-processor and triggerer as separate processes, plus REST helpers.

    :param connection_json: The ``oes_default`` connection (see :func:`oes_connection_json`).
    :param dags_folder: The DAGs folder (the example DAGs by default).
    :param env: Extra environment for every component, applied after :data:`STACK_ENV`.
    :param database: ``"postgres"`` or ``"sqlite"``; default ``$OES_STACK_DB``, else PostgreSQL.
    """

    def __init__(
        self,
        connection_json: str,
        dags_folder: Path = EXAMPLE_DAGS,
        env: Mapping[str, str] | None = None,
        database: str | None = None,
    ) -> None:
        merged = dict(STACK_ENV)
        merged.update(env or {})
        # The example DAGs import the provider, whose package sits at the repository root.
        merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.stack = AirflowStack(
            connections={"oes_default": connection_json}, env=merged, dags_folder=dags_folder, database=database
        )
        self.triggerer_name = "triggerer"
        self._triggerers_started = 0
        self.triggerer_jobs: dict[str, int] = {}
        """Job id of each started triggerer, by component name (filled by :meth:`triggerer_job_id`)."""
        self._jobs_before: dict[str, set[int]] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The API server's (and UI's) base URL."""
        return self.stack.url

    def start(self, dag_ids: Iterable[str] = EXAMPLE_DAG_IDS, timeout: float = 240.0) -> FullStack:
        """Migrate the DB, start every component, and wait until they are healthy and the DAGs are parsed.

        :param dag_ids: DAGs that must be visible through the REST API before this returns.
        :param timeout: Seconds for everything to come up.
        """
        deadline = time.monotonic() + timeout
        try:
            self.stack.migrate()
            self.stack.start_api_server(timeout=max(10.0, deadline - time.monotonic()))
            # `-s`: no log server, which would take the fixed ports 8793/8794.
            self.stack.start_component("scheduler", ["scheduler", "-s"])
            self.stack.start_component("dag-processor", ["dag-processor"])
            self.start_triggerer()
            self.wait_healthy(deadline - time.monotonic())
            for dag_id in dag_ids:
                self.wait_for(
                    partial(self._dag_visible, dag_id), deadline - time.monotonic(), f"DAG {dag_id} to be parsed"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _dag_visible(self, dag_id: str) -> bool:
        return self.stack.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200

    def stop(self) -> None:
        """Stop every component and its descendants (idempotent)."""
        self.stack.stop()

    def __enter__(self) -> FullStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health``."""
        response = self.stack.api("GET", "/api/v2/monitor/health")
        response.raise_for_status()
        return dict(response.json())

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the scheduler, triggerer and dag-processor report healthy; return the health answer.

        :param timeout: Seconds to wait.
        """

        def healthy() -> dict[str, Any] | None:
            answer = self.health()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ok = all((answer.get(p) or {}).get("status") == "healthy" for p in parts)
            return answer if ok else None

        return self.wait_for(healthy, timeout, "all components to report healthy")

    def start_triggerer(self) -> Component:
        """Start a triggerer (each one gets its own log file: ``triggerer.log``, ``triggerer-2.log``...)."""
        self._triggerers_started += 1
        name = "triggerer" if self._triggerers_started == 1 else f"triggerer-{self._triggerers_started}"
        # Jobs that exist now are not this triggerer's: triggerer_job_id() waits for the one that is new.
        self._jobs_before[name] = set(self._triggerer_jobs_alive())
        self.triggerer_name = name
        return self.stack.start_component(name, ["triggerer", "-s"])

    @property
    def triggerer_names(self) -> list[str]:
        """Names of the triggerers running now, oldest first."""
        return [name for name in self.stack.components if name.startswith("triggerer")]

    def _triggerer_jobs_alive(self) -> dict[int, str]:
        """``{job id: latest heartbeat}`` of triggerer jobs in state running (a SIGKILLed one stays listed)."""
        answer = self.api_json("GET", "/api/v2/jobs?job_type=TriggererJob&job_state=running&limit=100")
        return {int(job["id"]): str(job["latest_heartbeat"]) for job in answer["jobs"]}

    def triggerer_heartbeats(self) -> dict[int, str]:
        """``{job id: latest heartbeat (ISO 8601)}`` of every triggerer job still marked running."""
        return self._triggerer_jobs_alive()

    def triggerer_job_id(self, name: str, timeout: float = 60.0) -> int:
        """The job id of triggerer ``name`` (waits until its job appears; triggerers must start one by one).

        :param name: Component name, e.g. ``"triggerer-2"``.
        :param timeout: Seconds to wait for the job.
        """
        if name not in self.triggerer_jobs:
            before = self._jobs_before.get(name, set())

            def new_job() -> int | None:
                fresh = set(self._triggerer_jobs_alive()) - before - set(self.triggerer_jobs.values())
                if len(fresh) > 1:
                    raise AssertionError(f"several new triggerer jobs {sorted(fresh)}: start triggerers one by one")
                return fresh.pop() if fresh else None

            self.triggerer_jobs[name] = int(self.wait_for(new_job, timeout, f"the job of {name}"))
        return self.triggerer_jobs[name]

    @property
    def triggerer(self) -> Component:
        """The triggerer started last."""
        return self.stack.components[self.triggerer_name]

    def stop_triggerer(self, name: str) -> None:
        """Stop one triggerer gracefully (SIGTERM): Airflow hands its triggers to the others at once.

        :param name: Component name.
        """
        self.stack.components.pop(name).stop()
        self._after_triggerer_left(name)

    def _after_triggerer_left(self, name: str) -> None:
        if self.triggerer_name == name and self.triggerer_names:
            self.triggerer_name = self.triggerer_names[-1]

    def kill_triggerer(self, name: str | None = None) -> Component:
        """SIGKILL a triggerer's whole process group and every descendant, and wait for it.

        The triggerer gets no chance to clean up: its triggers stay assigned to it in the DB until its
        heartbeat is older than ``triggerer_health_check_threshold``.

        :param name: Component name; default the triggerer started last.
        """
        import psutil

        name = name or self.triggerer_name
        component = self.stack.components.pop(name)
        component.remember_descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.pid, signal.SIGKILL)
        for pid in component.descendants:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        component.process.wait(timeout=30)
        self._after_triggerer_left(name)
        return component

    # ------------------------------------------------------------------ waiting
    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
        """Call ``check`` until it returns something truthy and return that; raise :class:`StackTimeout`.

        :param check: Returns a truthy value when done (``None``/falsy to keep waiting).
        :param timeout: Seconds to wait.
        :param what: Description for the error message.
        :param interval: Seconds between calls.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        last_error: Exception | None = None
        while True:
            try:
                result = check()
            except Exception as exc:  # the API server may be busy for a moment; keep trying until the deadline
                last_error = exc
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise StackTimeout(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})")
            time.sleep(interval)

    # ------------------------------------------------------------------ REST API
    def api_json(self, method: str, path: str, json_body: Any = None, expect: int = 200) -> Any:
        """Call the REST API and return its JSON, asserting the status code.

        :param method: HTTP method.
        :param path: Path starting with ``/api/v2``.
        :param json_body: JSON body, if any.
        :param expect: Expected HTTP status.
        """
        response = self.stack.api(method, path, json=json_body)
        if response.status_code != expect:
            raise AssertionError(f"{method} {path} answered {response.status_code}: {response.text[:2000]}")
        return response.json()

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """Trigger a DAG run with ``conf`` (``POST /api/v2/dags/{dag_id}/dagRuns``); return its run id.

        :param dag_id: The DAG.
        :param conf: The run's ``conf`` (becomes ``params``).
        """
        body = {"logical_date": None, "conf": dict(conf)}
        return str(self.api_json("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The DAG run's state."""
        return str(self.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, TaskState]:
        """Every task instance of the run, keyed ``task_id`` / ``task_id[map_index]``."""
        answer = self.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        states = [
            TaskState(ti["task_id"], int(ti["map_index"]), ti["state"], int(ti["try_number"]))
            for ti in answer["task_instances"]
        ]
        return {s.key: s for s in states}

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 120.0) -> str:
        """Wait until the run is ``success`` or ``failed``; return that state.

        :param dag_id: The DAG.
        :param run_id: The run.
        :param timeout: Seconds to wait.
        """

        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in FINISHED_RUN_STATES else None

        try:
            return str(self.wait_for(finished, timeout, f"run {dag_id}/{run_id} to finish"))
        except StackTimeout as exc:
            raise StackTimeout(f"{exc}\n{self.describe(dag_id, run_id)}") from None

    def wait_states(
        self, dag_id: str, run_id: str, wanted: Callable[[dict[str, TaskState]], bool], what: str, timeout: float = 120
    ) -> dict[str, TaskState]:
        """Wait until ``wanted(task_states)`` holds; return those states.

        :param dag_id: The DAG.
        :param run_id: The run.
        :param wanted: Predicate over :meth:`task_states`.
        :param what: Description for the error message.
        :param timeout: Seconds to wait.
        """

        def check() -> dict[str, TaskState] | None:
            states = self.task_states(dag_id, run_id)
            return states if wanted(states) else None

        try:
            return dict(self.wait_for(check, timeout, what))
        except StackTimeout as exc:
            raise StackTimeout(f"{exc}\n{self.describe(dag_id, run_id)}") from None

    def trigger_holders(self, dag_id: str, run_id: str) -> dict[str, int | None]:
        """For every task instance with a trigger: the job id of the triggerer holding it (``None``: nobody).

        :param dag_id: The DAG.
        :param run_id: The run.
        """
        answer = self.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        holders: dict[str, int | None] = {}
        for ti in answer["task_instances"]:
            if ti.get("trigger"):
                key = ti["task_id"] if int(ti["map_index"]) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
                holder = ti["trigger"].get("triggerer_id")
                holders[key] = int(holder) if holder is not None else None
        return holders

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """The task's ``return_value`` XCom through the REST API, or ``None`` when it has none.

        :param dag_id: The DAG.
        :param run_id: The run.
        :param task_id: The task.
        :param map_index: The map index (-1 when not mapped).
        """
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}"
        )
        response = self.stack.api("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise AssertionError(f"GET {path} answered {response.status_code}: {response.text[:2000]}")
        value = response.json()["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log for one try through the REST API, as text (one line per event).

        :param dag_id: The DAG.
        :param run_id: The run.
        :param task_id: The task.
        :param try_number: The try.
        :param map_index: The map index (-1 when not mapped).
        """
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
            f"?full_content=true&map_index={map_index}"
        )
        response = self.stack._session.get(
            self.url + path,
            headers={"Authorization": f"Bearer {self.stack.token}", "Accept": "application/json"},
            timeout=30,
        )
        response.raise_for_status()
        content = response.json().get("content")
        if isinstance(content, str):
            return content
        lines = []
        for item in content or []:
            lines.append(json.dumps(item) if not isinstance(item, str) else item)
        return "\n".join(lines)

    def component_log(self, name: str) -> str:
        """The whole log file of a component (e.g. ``"triggerer"``)."""
        return (self.stack.logs / f"{name}.log").read_text(errors="replace")

    def describe(self, dag_id: str, run_id: str) -> str:
        """Task states and component log tails, for failure messages."""
        try:
            states = {k: (v.state, v.try_number) for k, v in sorted(self.task_states(dag_id, run_id).items())}
        except Exception as exc:
            states = {"<error>": (repr(exc), 0)}
        tails = "\n".join(
            f"--- {name} ---\n{component.log_tail(15)}" for name, component in self.stack.components.items()
        )
        return f"task states (state, try): {states}\n{tails}"


def requests_per_interval(request_times: list[float], window_start: float, window_end: float, interval: float) -> float:
    """Average requests per poll interval over a window (for the batched-poller check and the report).

    :param request_times: ``time.monotonic()`` of each request.
    :param window_start: Window start (monotonic).
    :param window_end: Window end (monotonic).
    :param interval: Poll interval in seconds.
    """
    inside = [t for t in request_times if window_start <= t < window_end]
    intervals = max(1.0, (window_end - window_start) / interval)
    return len(inside) / intervals


def expected_batches(allocations: int, batch_size: int) -> int:
    """List requests per sweep: ``ceil(allocations / batch_size)``."""
    return math.ceil(allocations / batch_size)

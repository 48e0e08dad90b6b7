"""Run real Airflow 3 components (``airflow api-server`` today) as separate processes for tests.

:class:`AirflowStack` owns one throw-away AIRFLOW_HOME, a metadata DB of its own and an environment built
from scratch. The metadata DB is a private PostgreSQL server (:class:`~tests.harness.postgres.PostgresServer`,
what production deployments run) unless ``database="sqlite"`` or ``OES_STACK_DB=sqlite`` asks for a SQLite
file in the home; the server is stopped and its data directory removed with the stack. In the environment,
every inherited ``AIRFLOW*`` variable (unit-test mode, the test session's AIRFLOW_HOME, stray
``AIRFLOW_CONN_*``) is dropped, and only the connections handed to the stack are passed on. Every process
it starts runs in its own process group, and :meth:`AirflowStack.stop` kills each group and every descendant
it can still see, so nothing outlives the test even when the test fails.

The API server is started first because it fixes the port that the execution API lives on; other
components (scheduler, dag-processor, triggerer) can then be added with :meth:`AirflowStack.start_component`,
which gives them the same environment (shared JWT secret, execution API URL, DB, fernet key)::

    with AirflowStack(connections={"oes_default": conn_json}) as stack:
        stack.migrate()
        stack.start_api_server()
        stack.start_component("scheduler", ["scheduler", "-s"])
        stack.start_component("triggerer", ["triggerer", "-s"])
        stack.api("GET", "/api/v2/connections")
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from tests.harness.postgres import PostgresServer

DATABASES = ("postgres", "sqlite")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
HEALTH_PATH = "/api/v2/monitor/health"


def default_database() -> str:
    """The stack's metadata DB kind: ``$OES_STACK_DB`` (``postgres`` or ``sqlite``), ``postgres`` by default."""
    value = os.environ.get("OES_STACK_DB", "postgres").strip().lower() or "postgres"
    if value not in DATABASES:
        raise ValueError(f"OES_STACK_DB must be one of {', '.join(DATABASES)}, got {value!r}")
    return value


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


@dataclass
class Component:
    """One started Airflow process.

    :param name: short name, also the log file's stem.
    :param process: the running process (leader of its own process group).
    :param log_path: file receiving its stdout and stderr.
    """

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    descendants: set[int] = field(default_factory=set)

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the component's log (for failure messages)."""
        return _tail(self.log_path, lines)

    def remember_descendants(self) -> None:
        """Record the pids of every current descendant (task runners may leave the process group)."""
        import psutil

        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return
        self.descendants.update(child.pid for child in children)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s, then kill any descendant left over."""
        import psutil

        self.remember_descendants()
        pgid = self.process.pid  # start_new_session=True: the leader's pid is the group id
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # workers of the group that ignored SIGTERM
        if self.process.poll() is None:
            self.process.wait(timeout=timeout)
        for pid in self.descendants:  # task runners that moved to their own process groups
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


class AirflowStack:
    """A throw-away Airflow installation whose components run as real processes.

    :param connections: Airflow connections to pass as ``AIRFLOW_CONN_<ID>`` (id -> URI or JSON string).
    :param env: extra environment variables (e.g. ``AIRFLOW__CORE__TEST_CONNECTION``); applied last.
    :param dags_folder: the DAGs folder; defaults to an empty folder inside the home.
    :param home: AIRFLOW_HOME to use; defaults to a fresh temporary directory, removed on :meth:`stop`.
    :param database: ``"postgres"`` (a private server started here, stopped by :meth:`stop`) or ``"sqlite"``;
        default :func:`default_database`.
    """

    def __init__(
        self,
        connections: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        dags_folder: Path | None = None,
        home: Path | None = None,
        database: str | None = None,
    ) -> None:
        self.database = database or default_database()
        if self.database not in DATABASES:
            raise ValueError(f"database must be one of {', '.join(DATABASES)}, got {self.database!r}")
        self.postgres: PostgresServer | None = None
        if self.database == "postgres":
            from tests.harness.postgres import PostgresServer

            self.postgres = PostgresServer().start()  # stops itself if it fails to start
        try:
            self._init(connections, env, dags_folder, home)
        except BaseException:
            if self.postgres is not None:
                self.postgres.stop()
            raise

    def _init(
        self,
        connections: Mapping[str, str] | None,
        env: Mapping[str, str] | None,
        dags_folder: Path | None,
        home: Path | None,
    ) -> None:
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="oes-airflow-stack-"))
        self.logs = self.home / "stack-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        if dags_folder is None:
            dags_folder = self.home / "dags"
            dags_folder.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components: dict[str, Component] = {}
        self._token: str | None = None
        self._session = requests.Session()
        self.env = self._build_env(connections or {}, env or {}, dags_folder)

    # ------------------------------------------------------------------ environment
    def _build_env(self, connections: Mapping[str, str], extra: Mapping[str, str], dags_folder: Path) -> dict[str, str]:
        from cryptography.fernet import Fernet

        # Inherited AIRFLOW* settings (unit-test mode, the pytest session's home, connections) would make
        # the components behave unlike a real deployment, so none of them is kept.
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # Every component must sign and check execution-API tokens with the same secret.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for conn_id, value in connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
        env.update(extra)
        return env

    @property
    def database_url(self) -> str:
        """``[database] sql_alchemy_conn`` of every component (contains the PostgreSQL password)."""
        if self.postgres is not None:
            return self.postgres.sqlalchemy_url
        return f"sqlite:///{self.home / 'airflow.db'}"

    # ------------------------------------------------------------------ CLI
    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` in the stack's environment and return the finished process.

        :param args: the CLI arguments, e.g. ``("connections", "get", "oes_default", "-o", "json")``.
        :param check: raise ``AssertionError`` with the output when the command fails.
        :param timeout: seconds before the command is killed.
        """
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`airflow {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def migrate(self) -> None:
        """Create the metadata DB (``airflow db migrate``)."""
        self.cli("db", "migrate")

    # ------------------------------------------------------------------ processes
    def start_component(self, name: str, args: list[str]) -> Component:
        """Start ``airflow <args>`` as a long-running process in its own process group.

        :param name: unique short name (``"scheduler"``, ``"triggerer"``...), also its log file's stem.
        :param args: the CLI arguments after ``airflow``.
        """
        if name in self.components:
            raise ValueError(f"a component named {name!r} is already running")
        log_path = self.logs / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        component = Component(name, process, log_path)
        self.components[name] = component
        return component

    def start_api_server(self, timeout: float = 120.0) -> Component:
        """Start ``airflow api-server`` (one worker) on the stack's port and wait until it is healthy."""
        component = self.start_component(
            "api-server", ["api-server", "-H", "127.0.0.1", "-p", str(self.port), "-w", "1"]
        )
        deadline = time.monotonic() + timeout
        while True:
            if component.process.poll() is not None:
                raise RuntimeError(
                    f"airflow api-server exited with {component.process.returncode}:\n{component.log_tail()}"
                )
            try:
                if self._session.get(self.url + HEALTH_PATH, timeout=2).status_code == 200:
                    return component
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"airflow api-server not healthy after {timeout} s:\n{component.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop every component (newest first), then the PostgreSQL server, and remove what the stack created.

        Idempotent; the database goes last so that no component loses it while stopping.
        """
        errors: list[BaseException] = []
        for name in reversed(list(self.components)):
            try:
                self.components.pop(name).stop()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        self._session.close()
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except BaseException as exc:
                errors.append(exc)
        if self._own_home and os.environ.get("OES_KEEP_STACK_HOME") != "1":
            shutil.rmtree(self.home, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> AirflowStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ REST API
    @property
    def token(self) -> str:
        """A bearer token for the REST API (``GET /auth/token``, allowed with all-admins)."""
        if self._token is None:
            response = self._session.get(self.url + "/auth/token", timeout=10)
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, json: Any = None, timeout: float = 30) -> requests.Response:
        """Call the API server's REST API with the stack's bearer token and return the response.

        :param method: HTTP method.
        :param path: path starting with ``/``, e.g. ``/api/v2/connections/oes_default``.
        :param json: JSON body, if any.
        :param timeout: seconds to wait for the answer.
        """
        return self._session.request(
            method,
            self.url + path,
            json=json,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )

"""A private, throw-away PostgreSQL server for the full-stack harness.

:class:`PostgresServer` runs Debian's ``initdb`` / ``pg_ctl`` (``apt-get install postgresql``; found under
``/usr/lib/postgresql/<version>/bin`` or on ``PATH``) on a fresh data directory in a temporary folder,
listening on 127.0.0.1 only, on a free port, with one database and one password-protected role for
Airflow::

    with PostgresServer() as pg:
        pg.sqlalchemy_url  # postgresql+psycopg2://airflow:<password>@127.0.0.1:<port>/airflow

PostgreSQL refuses to run as root. When the harness runs as root (CI does), every server command runs as
the ``postgres`` system user (``runuser -u postgres --``) and the temporary folder is handed to that user;
otherwise the commands run as the current user.

Nothing may outlive the run: :meth:`PostgresServer.stop` stops the server (``pg_ctl stop -m immediate``,
then SIGKILL of the postmaster and its backends if it is still there) and removes the whole temporary
folder. It is idempotent, and an ``atexit`` hook calls it for every server still running when the Python
process exits (a test that failed before its fixture's finalizer ran, an exception in a script). Only a
SIGKILL of the Python process itself can leave a server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.harness.airflow_stack import free_port

if TYPE_CHECKING:
    from types import TracebackType

_RUNNING: set[PostgresServer] = set()
"""Servers started and not yet stopped in this process (the ``atexit`` hook stops them)."""

# A throw-away test database: durability buys nothing and fsync costs seconds on a busy disk.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # api-server, scheduler, dag-processor, two or three triggerers and the CLI each keep a pool.
    "max_connections": "200",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are missing or cannot be run here (the message says how to fix it)."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$OES_PG_BIN``, Debian's newest, or ``PATH``."""
    override = os.environ.get("OES_PG_BIN")
    candidates = [Path(override)] if override else []
    # Debian keeps the server programs out of PATH, one directory per major version: take the newest.
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates += [Path(v) for v in versions]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise PostgresUnavailable(
        "PostgreSQL's initdb/pg_ctl were not found (looked in "
        f"{[str(c) for c in candidates] or '/usr/lib/postgresql/*/bin and PATH'}): "
        "run `apt-get install -y postgresql`, or set OES_PG_BIN to the directory holding them"
    )


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class PostgresServer:
    """One private PostgreSQL server: its own data directory, port and credentials; gone after :meth:`stop`.

    :param database: Name of the database created for Airflow.
    :param user: Name of the role that owns it (gets ``ALL`` on schema ``public``, which PostgreSQL 15 no
        longer grants to every role).
    :param start_timeout: Seconds ``pg_ctl start`` may take.
    """

    def __init__(self, database: str = "airflow", user: str = "airflow", start_timeout: float = 60.0) -> None:
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.start_timeout = start_timeout
        self.bin = find_pg_bin()
        self.port = 0
        self.root: Path | None = None
        self.postmaster_pid: int | None = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root, but there is no `postgres` user to run the server as (PostgreSQL refuses "
                    "root): `apt-get install -y postgresql` creates it"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root, but `runuser` (util-linux) is missing")

    # ------------------------------------------------------------------ paths and URLs
    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (inside the temporary folder)."""
        assert self.root is not None, "the server has not been started"
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        assert self.root is not None, "the server has not been started"
        return self.root / "postgresql.log"

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for ``[database] sql_alchemy_conn`` (Airflow derives the asyncpg one from it)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def __repr__(self) -> str:  # no password
        return f"{type(self).__name__}(port={self.port}, root={self.root}, pid={self.postmaster_pid})"

    # ------------------------------------------------------------------ commands
    def _run(self, *args: str, timeout: float = 120.0, input_text: str | None = None) -> str:
        """Run a server program (as ``postgres`` when we are root) and return its output; raise on failure."""
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"`{' '.join(args[:2])}` exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
                f"\n{self._log_tail()}"
            )
        return result.stdout

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except (OSError, AssertionError):
            return ""

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the server's private Unix socket; return psql's unaligned output.

        :param sql: One or more SQL statements.
        :param database: Database to connect to.
        """
        return self._run(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            input_text=sql,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> PostgresServer:
        """Create the cluster in a fresh temporary folder, start it on a free port, create role and database."""
        if self.root is not None:
            raise RuntimeError("this PostgreSQL server was already started")
        self.root = Path(tempfile.mkdtemp(prefix="oes-pg-"))
        _RUNNING.add(self)  # from here on, stop() (or the atexit hook) cleans up, whatever fails below
        try:
            if self._as_postgres:
                shutil.chown(self.root, user="postgres", group="postgres")
            # --no-sync: nothing to make durable in a throw-away cluster (saves seconds of fsync).
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            )
            self.port = free_port()
            options = " ".join(f"-c {k}={v}" for k, v in _SERVER_SETTINGS.items())
            options += f" -p {self.port} -c unix_socket_directories={self.root}"
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "start",
                timeout=self.start_timeout + 10,
            )
            self.postmaster_pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            password = self.password.replace("'", "''")
            self.psql(
                f"CREATE ROLE {self.user} LOGIN PASSWORD '{password}';\n"
                f"CREATE DATABASE {self.database} OWNER {self.user};\n"
            )
            self.psql(f"GRANT ALL ON SCHEMA public TO {self.user};\n", database=self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (whatever state it is in) and remove its temporary folder. Idempotent."""
        _RUNNING.discard(self)
        if self.root is None:
            return
        pid = self.postmaster_pid
        if pid is None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        if pid is not None and _pid_alive(pid):
            # Immediate: no checkpoint, nothing worth keeping; pg_ctl waits until the postmaster is gone.
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired, OSError):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "20", "stop", timeout=30)
            if _pid_alive(pid):
                self._kill_tree(pid)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    @staticmethod
    def _kill_tree(pid: int) -> None:
        import psutil

        try:
            parent = psutil.Process(pid)
            procs = [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until process ``pid`` no longer exists; return whether it is gone (for tests)."""
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()

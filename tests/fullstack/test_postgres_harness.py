"""The harness's private PostgreSQL server: what it starts, and that nothing of it is left after any run.

A leftover server would hold a port and memory on a shared CI machine, and a leftover data directory fills
its disk, so the cleanup is checked for every way a run can end: a normal stop, a test that fails inside a
fixture (the finalizer stops it), and a process that exits without stopping it (the ``atexit`` hook).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.harness.airflow_stack import AirflowStack
from tests.harness.postgres import PostgresServer, wait_gone

pytestmark = pytest.mark.fullstack

REPO_ROOT = Path(__file__).resolve().parents[2]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _assert_gone(info: dict[str, object]) -> None:
    pid = int(str(info["pid"]))
    assert wait_gone(pid), f"the PostgreSQL server (pid {pid}) outlived the run"
    for key in ("root", "home"):
        if key in info:
            assert not Path(str(info[key])).exists(), f"{key} {info[key]} was left behind"


def test_private_server_runs_as_postgres_on_loopback_and_grants_the_airflow_user() -> None:
    import psycopg2

    with PostgresServer() as pg:
        assert pg.root is not None
        root, pid = pg.root, pg.postmaster_pid
        assert pid is not None
        postmaster = psutil.Process(pid)
        if os.geteuid() == 0:
            assert postmaster.username() == "postgres"  # PostgreSQL refuses root
            assert pg.data_dir.owner() == "postgres"
        listening = {c.laddr.ip for c in postmaster.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        assert pg.port > 0
        assert pg.password not in repr(pg)
        # The Airflow role may create tables in schema public (PostgreSQL 15 no longer lets every role).
        conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user, password=pg.password, dbname=pg.database)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE public.probe (x int)")
                cur.execute("INSERT INTO probe VALUES (1)")
                cur.execute("SELECT current_user, count(*) FROM probe")
                assert cur.fetchone() == ("airflow", 1)
        finally:
            conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user, password="wrong", dbname=pg.database)
    _assert_gone({"pid": pid, "root": root})
    pg.stop()  # idempotent


def test_failed_test_leaves_no_server_and_no_data_directory(tmp_path: Path) -> None:
    """A test that fails while a stack fixture holds a PostgreSQL server: the finalizer cleans everything."""
    info_file = tmp_path / "info.json"
    test_file = tmp_path / "test_fails.py"
    test_file.write_text(
        textwrap.dedent(
            f"""
            import json
            import pytest
            from tests.harness.airflow_stack import AirflowStack

            @pytest.fixture
            def stack():
                with AirflowStack() as stack:
                    yield stack

            def test_fails(stack):
                info = {{"pid": stack.postgres.postmaster_pid, "root": str(stack.postgres.root),
                        "home": str(stack.home), "url": stack.database_url}}
                open({str(info_file)!r}, "w").write(json.dumps(info))
                assert False, "this test fails on purpose"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(test_file), "--rootdir", str(tmp_path)],
        env=_child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 failed" in result.stdout
    info = json.loads(info_file.read_text())
    assert info["url"].startswith("postgresql+psycopg2://airflow:")
    _assert_gone(info)


@pytest.mark.parametrize("ending", ["exception", "sys.exit"])
def test_process_exiting_without_stop_leaves_nothing(tmp_path: Path, ending: str) -> None:
    """Nobody calls stop(): the atexit hook stops the server and removes its folder."""
    end = "raise RuntimeError('the script died')" if ending == "exception" else "sys.exit(3)"
    script = textwrap.dedent(
        f"""
        import json, sys
        from tests.harness.postgres import PostgresServer
        pg = PostgresServer().start()
        print(json.dumps({{"pid": pg.postmaster_pid, "root": str(pg.root)}}), flush=True)
        {end}
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=_child_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    info = json.loads(result.stdout.strip().splitlines()[-1])
    _assert_gone(info)


def test_stack_on_sqlite_starts_no_server() -> None:
    with AirflowStack(database="sqlite") as stack:
        assert stack.postgres is None
        assert stack.database_url.startswith("sqlite:///")
        assert stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == stack.database_url


def test_unknown_database_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'mysql'"):
        AirflowStack(database="mysql")
    monkeypatch.setenv("OES_STACK_DB", "oracle")
    with pytest.raises(ValueError, match=r"OES_STACK_DB.*'oracle'"):
        AirflowStack()

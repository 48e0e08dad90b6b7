"""Test-wide Airflow environment: a throw-away AIRFLOW_HOME with a SQLite metadata DB.

The variables are set at import time, before any test module imports Airflow, so no test can touch
a developer's real Airflow home or configuration.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests._paths import EXAMPLE_DAGS

# The StatsD listener fixtures (statsd_listener, statsd_metrics) for the metrics tests.
pytest_plugins = ["tests._statsd"]

# [START howto_test_airflow_home]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="oes-airflow-home-"))
# Removed when the test process exits, so repeated runs do not pile up homes (and SQLite DBs) in /tmp.
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
for _name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
    del os.environ[_name]
# [END howto_test_airflow_home]


# [START howto_test_airflow_db]
@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the SQLite metadata DB once per test session (``airflow db migrate``); return AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
    )
    return _AIRFLOW_HOME


# [END howto_test_airflow_db]


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make ``time.sleep`` (tenacity's and the sensor's) instant in the test's own thread; record the waits.

    Other threads (a simulator, Airflow's in-process API left by a ``dag.test()``) keep the real sleep, so
    they neither spin nor show up in the recorded waits.
    """
    sleeps: list[float] = []
    real_sleep = time.sleep
    test_thread = threading.get_ident()

    def fake_sleep(seconds: float) -> None:
        if threading.get_ident() == test_thread:
            sleeps.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", fake_sleep)
    return sleeps

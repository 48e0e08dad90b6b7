"""A StatsD listener on 127.0.0.1 (UDP, free port) and the fixture that points Airflow's metrics at it."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@dataclass(frozen=True)
class Metric:
    """One StatsD line, parsed: ``name`` (InfluxDB-style tags split off), value, type and tags.

    ``kind`` is the StatsD type: ``c`` counter, ``g`` gauge, ``ms`` timer.
    """

    name: str
    value: float
    kind: str
    tags: dict[str, str]
    raw: str


def parse_line(line: str) -> Metric:
    """Parse ``name[,k=v...]:value|type[|@rate][|#k:v,...]`` (plain, InfluxDB-tagged or DogStatsD)."""
    head, _, rest = line.partition(":")
    parts = rest.split("|")
    value, kind = float(parts[0]), parts[1]
    name, *influx = head.split(",")
    tags = dict(item.split("=", 1) for item in influx)
    for part in parts[2:]:
        if part.startswith("#"):
            tags.update(tag.split(":", 1) for tag in part[1:].split(",") if tag)
    return Metric(name, value, kind, tags, line)


class StatsdListener:
    """Collects every datagram sent to a UDP port on 127.0.0.1 (a background thread reads them)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="statsd-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65535)
            except OSError:  # timeout (to look at the stop flag), or closed
                continue
            with self._lock:
                # StatsD clients may pack several lines into one datagram.
                self._lines.extend(line for line in data.decode().split("\n") if line)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()

    def metrics(self, prefix: str = "airflow.oes.") -> list[Metric]:
        """Every parsed line whose name starts with ``prefix``, in arrival order."""
        return [m for m in (parse_line(line) for line in self.lines) if m.name.startswith(prefix)]

    def named(self, name: str) -> list[Metric]:
        return [m for m in self.metrics("") if m.name == name]

    def wait_for(self, predicate: Callable[[list[Metric]], bool], timeout: float = 10.0) -> list[Metric]:
        """Wait until ``predicate(self.metrics())`` holds (datagrams arrive asynchronously); return them."""
        deadline = time.monotonic() + timeout
        while True:
            metrics = self.metrics()
            if predicate(metrics) or time.monotonic() > deadline:
                return metrics
            time.sleep(0.02)


@pytest.fixture
def statsd_listener() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture
def statsd_metrics(
    statsd_listener: StatsdListener, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., StatsdListener]]:
    """Return ``configure(tags="influxdb"|"datadog"|None)``: switch Airflow's StatsD metrics on, to the listener.

    Configured exactly as a deployment does, through ``AIRFLOW__METRICS__*`` variables; the provider's
    metrics module is reset before and after so that it reads them again.
    """
    from airflow_provider_oes import _metrics

    def configure(tags: str | None = "influxdb") -> StatsdListener:
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd_listener.port))
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", str(tags == "influxdb"))
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_DATADOG_ENABLED", str(tags == "datadog"))
        _metrics.reset(reinitialize=True)
        return statsd_listener

    yield configure
    monkeypatch.undo()
    _metrics.reset(reinitialize=True)

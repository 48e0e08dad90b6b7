"""The watchers' metrics: one :class:`~airflow_provider_oes._metrics.WatcherMetrics` per connection and
enterprise in a loop, shared by its watchers."""

from __future__ import annotations

from typing import Any

from airflow_provider_oes._metrics import WatcherMetrics
from airflow_provider_oes.triggers._shared.loop_local import LoopLocal

_groups: LoopLocal[dict[tuple[str, str], WatcherMetrics]] = LoopLocal(dict)


def join_metrics(conn_id: str, enterprise_id: str) -> WatcherMetrics:
    """The metrics of the loop's watchers of a connection and enterprise, with one watcher more."""
    groups = _groups.get()
    metrics = groups.get((conn_id, enterprise_id))
    if metrics is None:
        metrics = groups[(conn_id, enterprise_id)] = WatcherMetrics(conn_id, enterprise_id)
    metrics.watchers += 1
    return metrics


def leave_metrics(metrics: WatcherMetrics | None) -> None:
    """One watcher fewer; the last one forgets the group (its final flush still sends the gauge at 0)."""
    if metrics is None:
        return
    metrics.watchers -= 1
    if metrics.watchers <= 0:
        # Found by identity, not through the running loop: a generator's cleanup may run after its loop stopped.
        for groups in _groups.values():
            for key, found in list(groups.items()):
                if found is metrics:
                    del groups[key]


def metric_groups() -> dict[tuple[str, str], WatcherMetrics]:
    """The running loop's groups (for tests)."""
    return _groups.get()


def report_metrics(metrics: WatcherMetrics | None, connection: Any, final: bool = False) -> None:
    """Send the watchers' metrics when due (every ``FLUSH_PERIOD`` s), or now when ``final``.

    The connection's request metrics and rate-limit gauges go along: they are gathered by its shared client,
    whose only other sender is a shared poller, which an event-driven deployment may not run. In-memory feeds
    (tests) have no connection.
    """
    if metrics is None or not (metrics.on and (final or metrics.due())):
        return
    if connection is None:
        metrics.flush()
    else:
        metrics.flush(connection.client.metrics, connection.limiter)

"""Airflow's own metrics entry point (StatsD, DogStatsD or OpenTelemetry), found once, and the direct sends.

Airflow 3.3 has ``airflow.sdk.observability.stats`` as module functions, 3.2 as the ``Stats`` class. A
failure inside a metrics call is logged once and swallowed: metrics never break a poll.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._metrics.names import (
    REQUEST_LATENCY,
    REQUESTS,
    RETRIES,
    SENSOR_WAIT_TIME,
    clear_tag_cache,
    metric_name,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_oes._metrics.reporters import Batch

log = logging.getLogger(__name__)

OFF: Any = object()
"""What :func:`current` returns while metrics are off."""
backend: Any = None
"""``None``: not looked up yet; :data:`OFF`: metrics are off; else Airflow's stats module (3.3) or class (3.2).
Tests and benchmarks may replace it (e.g. with a wrapper counting the calls)."""
owns_init = False
"""True when this module initialized the Task SDK's stats (nobody had in this process); reset() redoes it."""
failed_once = False
"""True once a metrics call failed (the failure is logged only the first time)."""
_force_init = False


def current() -> Any:
    """Airflow's stats entry point, or :data:`OFF`."""
    found = backend
    return found if found is not None else _resolve()


def enabled() -> bool:
    """True when the deployment switched on StatsD, DogStatsD or OpenTelemetry metrics in ``[metrics]``."""
    found = backend
    return (found if found is not None else _resolve()) is not OFF


def failed() -> None:
    """A metrics call raised: log it the first time, never again."""
    global failed_once
    if not failed_once:
        failed_once = True
        log.warning("Could not emit an OES metric; metrics errors are not logged again", exc_info=True)


def request(kind: str, outcome: str, seconds: float, tags: Mapping[str, str], batch: Batch | None = None) -> None:
    """One HTTP attempt ended: count it by kind and outcome, and time it.

    :param kind: One of :data:`~airflow_provider_oes._metrics.names.REQUEST_KINDS`, named by the caller.
    :param outcome: One of :data:`~airflow_provider_oes._metrics.names.OUTCOMES`.
    :param seconds: From sending the request to having its whole answer (or the transport error).
    :param tags: From :func:`~airflow_provider_oes._metrics.names.tags_for`.
    :param batch: Gather it there (the shared poller's client) instead of sending it now (the sync hook).
    """
    if batch is not None:
        if batch.on:
            batch.count(metric_name(REQUESTS, kind, outcome), tags)
            batch.timing(metric_name(REQUEST_LATENCY, kind), tags, seconds * 1000.0)
        return
    found = backend if backend is not None else _resolve()
    if found is OFF:
        return
    try:
        found.incr(metric_name(REQUESTS, kind, outcome), tags=tags)
        found.timing(metric_name(REQUEST_LATENCY, kind), seconds * 1000.0, tags=tags)
    except Exception:
        failed()


def retry(kind: str, tags: Mapping[str, str], batch: Batch | None = None) -> None:
    """An attempt is about to be retried (``kind`` and ``tags`` as for :func:`request`)."""
    if batch is not None:
        batch.count(metric_name(RETRIES, kind), tags)
        return
    found = backend if backend is not None else _resolve()
    if found is OFF:
        return
    try:
        found.incr(metric_name(RETRIES, kind), tags=tags)
    except Exception:
        failed()


def sensor_wait(seconds: float, status: str, mode: str, tags: Mapping[str, str]) -> None:
    """A sensor in poke or reschedule mode saw the final status ``seconds`` after its first check.

    :param seconds: From the first check to this one.
    :param status: ``cleared`` or ``released``.
    :param mode: ``poke`` or ``reschedule`` (sent as the ``mode`` tag).
    :param tags: From :func:`~airflow_provider_oes._metrics.names.tags_for`.
    """
    found = backend if backend is not None else _resolve()
    if found is OFF:
        return
    try:
        found.timing(f"{SENSOR_WAIT_TIME}.{status}", max(0.0, seconds) * 1000.0, tags={**tags, "mode": mode})
    except Exception:
        failed()


def reset(reinitialize: bool = False) -> None:
    """Look at ``[metrics]`` again on the next call (tests change the configuration between cases).

    :param reinitialize: Also rebuild the backend of Airflow's SDK stats from the configuration now, as a
        process start does (a test switching metrics on or off within one process needs this).
    """
    global backend, _force_init
    backend = None
    clear_tag_cache()
    if reinitialize:
        _force_init = True
        _resolve()


def _resolve() -> Any:
    """Find Airflow's metrics entry point once per process (and after :func:`reset`)."""
    global backend, _force_init
    try:
        on = _metrics_on()
        stats = _sdk_stats(force=_force_init) if on or _force_init else None
        found = stats if on else OFF
    except Exception:
        log.warning("Airflow's metrics could not be set up; OES metrics are off", exc_info=True)
        found = OFF
    _force_init = False
    backend = found
    return found


def _metrics_on() -> bool:
    from airflow.sdk import conf

    return any(
        conf.getboolean("metrics", option, fallback=False)
        for option in ("statsd_on", "statsd_datadog_enabled", "otel_on")
    )


def _sdk_stats(force: bool = False) -> Any:
    """The Task SDK's stats entry point, initialized from ``[metrics]`` if nobody in this process did.

    A triggerer initializes only airflow-core's copy, a bare process (tests, ``dag.test()``) none:
    uninitialized, the SDK's silently drops every metric.
    """
    global owns_init
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    if hasattr(stats, "incr"):  # Airflow 3.3+: module functions over one module-level backend
        import importlib

        shared = importlib.import_module(stats.incr.__module__)
        if force or owns_init or getattr(shared, "_factory", None) is None:
            from airflow.sdk import conf

            stats.initialize(
                factory=stats_utils.get_stats_factory(),
                export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
            )
            owns_init = True
        return stats
    # Airflow 3.2: the Stats class (its metaclass builds the backend on first use).
    # Typed as Any: the installed (newer) Airflow's stubs describe the 3.3 signatures.
    stats_cls: Any = stats.Stats
    get_stats_factory: Any = stats_utils.get_stats_factory
    if force or owns_init or type.__getattribute__(stats_cls, "factory") is None:
        stats_cls.initialize(factory=get_stats_factory(stats_cls))
        owns_init = True
    return stats_cls

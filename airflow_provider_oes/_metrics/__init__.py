"""The provider's metrics, sent through Airflow's own (StatsD, DogStatsD or OpenTelemetry); no library of its own.

:mod:`.names` (the catalog), :mod:`.backend` (Airflow 3.2/3.3 discovery, direct sends), :mod:`.reporters`
(gathering in the triggerer). The names and their meaning: ``docs/internals/metrics.rst``.
"""

from __future__ import annotations

from airflow_provider_oes._metrics.backend import enabled, request, reset, retry, sensor_wait
from airflow_provider_oes._metrics.names import (
    EVENT_STATUSES,
    FLUSH_PERIOD,
    OUTCOMES,
    PENDING_MAX,
    REQUEST_KINDS,
    TIMING_SAMPLES,
    outcome,
    tags_for,
)
from airflow_provider_oes._metrics.reporters import Batch, PollerMetrics, Reporter, Sample, WatcherMetrics

__all__ = [
    "EVENT_STATUSES",
    "FLUSH_PERIOD",
    "OUTCOMES",
    "PENDING_MAX",
    "REQUEST_KINDS",
    "TIMING_SAMPLES",
    "Batch",
    "PollerMetrics",
    "Reporter",
    "Sample",
    "WatcherMetrics",
    "enabled",
    "outcome",
    "request",
    "reset",
    "retry",
    "sensor_wait",
    "tags_for",
]

"""Metric names, their fixed dimensions (kind, outcome, status) and tags. Pure data and cached strings."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from airflow_provider_oes.models import FINAL_STATUS_VALUES

if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "oes"

REQUEST_KINDS = ("single", "id_batch", "feed_page", "list", "settlement_single", "settlement_page")
"""What a request asked, as its caller names it: one allocation, a batch of ids, a page of the change feed,
a page of a plain listing (the hook, the operator), one settlement, or a page of a settlement-area list."""
OUTCOMES = ("2xx", "3xx", "4xx", "429", "5xx", "transport_error")
"""How an HTTP attempt ended, by status class (429 apart: it is the one to alert on)."""
EVENT_STATUSES = (*FINAL_STATUS_VALUES, "error")
"""Trigger events by final status; ``error`` for a permanent error event."""

REQUESTS = PREFIX + ".requests"
RETRIES = PREFIX + ".retries"
EVENTS = PREFIX + ".events"
RECONCILIATION_FINDS = PREFIX + ".reconciliation.finds"
WAITING = PREFIX + ".allocations.waiting"
WATCHERS = PREFIX + ".watchers"
RATE_LIMIT_IN_WINDOW = PREFIX + ".rate_limit.in_window"
RATE_LIMIT_LIMIT = PREFIX + ".rate_limit.limit"
RATE_LIMIT_RATE = PREFIX + ".rate_limit.rate"
REQUEST_LATENCY = PREFIX + ".request_latency"
EVENT_DELAY = PREFIX + ".event_delay"
SENSOR_WAIT_TIME = PREFIX + ".sensor.wait_time"

TIMING_SAMPLES = 4
"""Timings sent per name and tags per flush at most (a uniform sample of what was seen since the last one)."""
PENDING_MAX = 1024
"""Events a poller notes before counting them (at the latest at each flush): bounds the memory of a burst."""
FLUSH_PERIOD = 20.0
"""Seconds between two sends of gathered metrics (two of StatsD's default flush intervals)."""

_SAFE_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/")
"""What Airflow's stat-name check accepts; anything else in a tag value would make it drop the metric."""


def tags_for(conn_id: str, enterprise_id: str | None = None) -> Mapping[str, str]:
    """The tags of every metric about one connection (and enterprise): ``conn_id``, ``enterprise_id``.

    Values are cached per pair and made safe for every backend (characters Airflow's StatsD name check
    refuses become ``_``). Never pass anything secret: tags leave the process in clear text.

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id; ``None`` leaves the tag out (connection-wide metrics).
    """
    return _tags(conn_id, enterprise_id)


@lru_cache(maxsize=1024)
def _tags(conn_id: str, enterprise_id: str | None) -> Mapping[str, str]:
    result = {"conn_id": _safe(conn_id)}
    if enterprise_id is not None:
        result["enterprise_id"] = _safe(enterprise_id)
    return result


def clear_tag_cache() -> None:
    """Forget the cached tags (after a configuration change)."""
    _tags.cache_clear()


@lru_cache(maxsize=256)
def metric_name(*parts: str) -> str:
    """A metric name from its parts, built once (the hot paths would otherwise format it on every call)."""
    return ".".join(parts)


def _safe(value: str) -> str:
    text = str(value)
    if all(ch in _SAFE_TAG_CHARS for ch in text):
        return text
    return "".join(ch if ch in _SAFE_TAG_CHARS else "_" for ch in text)


def outcome(status_code: int | None) -> str:
    """The outcome class of an HTTP attempt: ``429``, ``2xx``..``5xx``, or ``transport_error`` for no answer.

    :param status_code: The HTTP status, or ``None`` when no answer came.
    """
    if status_code is None:
        return "transport_error"
    if status_code == 429:
        return "429"
    return f"{status_code // 100}xx"

"""The provider's metrics: their names, and the few calls that emit them through Airflow's own metrics.

Airflow already ships metrics (StatsD, DogStatsD or OpenTelemetry, whichever the deployment switched on in
``[metrics]``); this module sends through that, it brings no metrics library of its own. Both supported
Airflow lines carry the Task SDK's ``airflow.sdk.observability.stats``: on 3.3 as module functions
(``stats.incr``; ``airflow.stats.Stats`` is a deprecated shim there), on 3.2 as the ``Stats`` class.

Names (all under ``oes.``; Airflow adds its own ``[metrics] statsd_prefix`` / ``otel_prefix`` in front):

* ``oes.requests.<kind>.<outcome>`` (counter): HTTP attempts to BitGo, retries included. ``kind`` is
  ``single`` (GET of one allocation), ``id_batch`` (list endpoint asked for given ids) or ``feed_page``
  (list endpoint read as the change feed); ``outcome`` is ``2xx``, ``3xx``, ``4xx``, ``429``, ``5xx`` or
  ``transport_error`` (no HTTP answer: refused, reset, timed out, TLS).
* ``oes.retries.<kind>`` (counter): attempts that were retries of a failed one.
* ``oes.events.<status>`` (counter): trigger events fired, by ``cleared``, ``released`` or ``error``; for the
  asset watchers (``AllocationEventTrigger``), the allocations their events carried, one count each.
* ``oes.reconciliation.finds`` (counter): final allocations the safety-net reconciliation found that the
  change feed had not delivered (should stay 0 against a server that keeps the spec).
* ``oes.allocations.waiting`` (gauge): allocations the shared poller of a connection and enterprise waits for.
* ``oes.watchers`` (gauge): asset watchers (``AllocationEventTrigger``) reading the change feed of a connection
  and enterprise in this process (identical watchers that Airflow runs as one shared stream count once).
* ``oes.rate_limit.in_window`` / ``oes.rate_limit.limit`` (gauges): requests in the connection's current
  rate-limit window, and how many the window allows.
* ``oes.rate_limit.rate`` (gauge): the adaptive limiter's current allowance, in requests per window.
* ``oes.request_latency.<kind>`` (timer, ms): from sending a request to having its whole answer.
* ``oes.event_delay.<status>`` (timer, ms): from the allocation's ``updatedAt`` (server clock) to its trigger
  event (triggerer clock; clock skew shows here, negative values are reported as 0).
* ``oes.sensor.wait_time.<status>`` (timer, ms): a sensor in ``poke`` or ``reschedule`` mode, from its first
  check to the final status (across reschedules).

Why the small fixed dimensions (kind, outcome, status) are part of the name and not tags: plain StatsD
drops tags, and an alert on 429s must work there too. Tags carry what varies per deployment: ``conn_id`` and
``enterprise_id`` (never the token), as StatsD tags (``statsd_influxdb_enabled``), DogStatsD tags
(``statsd_datadog_enabled``) or OpenTelemetry attributes. The rate-limit gauges carry ``conn_id`` only: the
limit belongs to the connection's token and is shared by all of its enterprises.

Cost: with metrics off every call returns after one check of a flag. With them on, each datagram costs
what Airflow's own metric calls cost (its name and tag checks, then a UDP send for StatsD: tens of
microseconds). So in the triggerer nothing is sent per request or per event: the shared poller and its
connection's client gather counts and timings in a :class:`Batch`, sent every :data:`FLUSH_PERIOD` seconds
at the end of a sweep (counters with their exact counts, timers as a uniform sample of at most
:data:`TIMING_SAMPLES` per name and tags, then the gauges). A poller only notes each event as it fires (its
status, ``updatedAt`` and the time) and counts the notes in one loop at the flush: counted one by one amid
a large fleet's work, each event cost several times more. The sync hook, one request per poke, sends at
once. A failure inside a metrics call is logged once and swallowed: metrics never break a poll.
"""

from __future__ import annotations

import logging
import math
import random
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

log = logging.getLogger(__name__)

PREFIX = "oes"

REQUEST_KINDS = ("single", "id_batch", "feed_page")
"""What a request asked: one allocation, a batch of ids, or a page of the change feed."""
OUTCOMES = ("2xx", "3xx", "4xx", "429", "5xx", "transport_error")
"""How an HTTP attempt ended, by status class (429 apart: it is the one to alert on)."""
EVENT_STATUSES = ("cleared", "released", "error")
"""Trigger events by final status; ``error`` for a permanent error event."""

REQUESTS = PREFIX + ".requests"
RETRIES = PREFIX + ".retries"
EVENTS = PREFIX + ".events"
RECONCILIATION_FINDS = PREFIX + ".reconciliation.finds"
WAITING = PREFIX + ".allocations.waiting"
RATE_LIMIT_IN_WINDOW = PREFIX + ".rate_limit.in_window"
RATE_LIMIT_LIMIT = PREFIX + ".rate_limit.limit"
RATE_LIMIT_RATE = PREFIX + ".rate_limit.rate"
REQUEST_LATENCY = PREFIX + ".request_latency"
EVENT_DELAY = PREFIX + ".event_delay"
SENSOR_WAIT_TIME = PREFIX + ".sensor.wait_time"

TIMING_SAMPLES = 4
"""Timings sent per name and tags per flush at most (a uniform sample of what was seen since the last one)."""
_PENDING_MAX = 1024
"""Events a poller notes before counting them (at the latest at each flush): bounds the memory of a burst."""
FLUSH_PERIOD = 20.0
"""Seconds between two sends of a poller's gathered metrics (two of StatsD's default flush intervals): the
cost stays the same whatever the poll interval."""

_SAFE_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/")
"""What Airflow's stat-name check accepts; anything else in a tag value would make it drop the metric."""

_OFF: Any = object()
_backend: Any = None
"""``None``: not looked up yet; ``_OFF``: metrics are off; else Airflow's stats module (3.3) or class (3.2)."""
_owns_init = False
"""True when this module initialized the Task SDK's stats (nobody had in this process); reset() redoes it."""
_force_init = False
"""Set by ``reset(reinitialize=True)``: initialize the SDK's stats from the configuration on the next lookup."""
_failed_once = False


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


@lru_cache(maxsize=256)
def _name(*parts: str) -> str:
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


def enabled() -> bool:
    """True when the deployment switched on StatsD, DogStatsD or OpenTelemetry metrics in ``[metrics]``."""
    backend = _backend if _backend is not None else _resolve()
    return backend is not _OFF


def request(kind: str, outcome: str, seconds: float, tags: Mapping[str, str], batch: Batch | None = None) -> None:
    """One HTTP attempt ended: count it by kind and outcome, and time it.

    :param kind: One of :data:`REQUEST_KINDS`.
    :param outcome: One of :data:`OUTCOMES` (see :func:`outcome`).
    :param seconds: From sending the request to having its whole answer (or the transport error).
    :param tags: From :func:`tags_for`.
    :param batch: Gather it there (the shared poller's client) instead of sending it now (the sync hook).
    """
    if batch is not None:
        if batch.on:
            batch.count(_name(REQUESTS, kind, outcome), tags)
            batch.timing(_name(REQUEST_LATENCY, kind), tags, seconds * 1000.0)
        return
    backend = _backend if _backend is not None else _resolve()
    if backend is _OFF:
        return
    try:
        backend.incr(_name(REQUESTS, kind, outcome), tags=tags)
        backend.timing(_name(REQUEST_LATENCY, kind), seconds * 1000.0, tags=tags)
    except Exception:
        _failed()


def retry(kind: str, tags: Mapping[str, str], batch: Batch | None = None) -> None:
    """An attempt is about to be retried.

    :param kind: One of :data:`REQUEST_KINDS`.
    :param tags: From :func:`tags_for`.
    :param batch: Gather it there instead of sending it now.
    """
    if batch is not None:
        batch.count(_name(RETRIES, kind), tags)
        return
    backend = _backend if _backend is not None else _resolve()
    if backend is _OFF:
        return
    try:
        backend.incr(_name(RETRIES, kind), tags=tags)
    except Exception:
        _failed()


class Batch:
    """Counters and timings gathered in memory and sent together by :meth:`flush`.

    Each datagram costs Airflow's name and tag checks, tens of microseconds: a burst of 10,000 flips, or a
    sweep of 500 id batches, must not cost a datagram each. A batch sends one counter increment per name and
    tags, with the exact count, and at most :data:`TIMING_SAMPLES` timings per name and tags, drawn uniformly
    from all it saw (reservoir sampling: percentiles stay unbiased; the exact count is the counter's).

    Used from one event loop (the shared poller's): not thread-safe.
    """

    __slots__ = ("_counts", "_samples", "on")

    def __init__(self) -> None:
        self.on = enabled()
        """Whether metrics are on (looked up once, at creation): off, every method returns at once."""
        # Keyed by name and the identity of a tags_for() mapping (cached, so one object per connection and
        # enterprise); the mapping itself rides along.
        self._counts: dict[tuple[str, int], list[Any]] = {}
        self._samples: dict[tuple[str, int], list[Any]] = {}

    def count(self, name: str, tags: Mapping[str, str], n: int = 1) -> None:
        """Add ``n`` to the counter ``name``."""
        if not self.on:
            return
        entry = self._counts.get((name, id(tags)))
        if entry is None:
            self._counts[(name, id(tags))] = [tags, n]
        else:
            entry[1] += n

    def timing(self, name: str, tags: Mapping[str, str], ms: float) -> None:
        """Offer one timing of ``ms`` milliseconds to the sample of ``name``."""
        if not self.on:
            return
        entry = self._samples.get((name, id(tags)))
        if entry is None:
            self._samples[(name, id(tags))] = [tags, 1, [ms]]
            return
        entry[1] += 1
        seen, values = entry[1], entry[2]
        if seen <= TIMING_SAMPLES:
            values.append(ms)
        else:
            slot = int(random.random() * seen)
            if slot < TIMING_SAMPLES:
                values[slot] = ms

    def flush(self) -> None:
        """Send everything gathered since the last flush, and start afresh."""
        if not self.on or not (self._counts or self._samples):
            return
        counts, samples = self._counts, self._samples
        self._counts, self._samples = {}, {}
        backend = _backend if _backend is not None else _resolve()
        if backend is _OFF:
            return
        try:
            for (name, _), (tags, n) in counts.items():
                backend.incr(name, n, tags=tags)
            for (name, _), (tags, _seen, values) in samples.items():
                for ms in values:
                    backend.timing(name, ms, tags=tags)
        except Exception:
            _failed()


class _Sample:
    """A count, and a uniform sample of at most :data:`TIMING_SAMPLES` of the values counted.

    Reservoir sampling with geometric skips (Li's "Algorithm L"): which of the coming items will enter the
    sample is drawn in advance, so an item that does not costs one comparison, and its value need not be
    computed at all (``seen >= next`` tells the caller whether to compute and :meth:`take` it).
    """

    __slots__ = ("next", "seen", "values", "weight")

    def __init__(self) -> None:
        self.seen = 0
        """Items counted (the caller increments it, then offers the item if ``seen >= next``)."""
        self.next = 1
        """The count at which the next item enters the sample."""
        self.values: list[float] = []
        self.weight = 1.0

    def take(self, value: float) -> None:
        """Put the item counted last into the sample (call only when ``seen >= next``)."""
        k = TIMING_SAMPLES
        if len(self.values) < k:
            self.values.append(value)
            self.next = self.seen + 1
            if len(self.values) == k:
                self.weight = math.exp(math.log(random.random() or 1e-300) / k)
                self._skip()
            return
        self.values[int(random.random() * k)] = value
        self.weight *= math.exp(math.log(random.random() or 1e-300) / k)
        self._skip()

    def _skip(self) -> None:
        if self.weight >= 1.0:  # pragma: no cover - only for random() returning exactly 0 twice
            self.next = self.seen + 1
            return
        self.next = self.seen + int(math.log(random.random() or 1e-300) / math.log1p(-self.weight)) + 1


class PollerMetrics:
    """What one shared poller reports: its events and reconciliation finds (batched) and its gauges.

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id of the poller.
    """

    __slots__ = ("_events", "_pending", "batch", "conn_tags", "last_flush", "on", "tags")

    def __init__(self, conn_id: str, enterprise_id: str) -> None:
        self.batch = Batch()
        self.on = self.batch.on
        """Whether metrics are on (looked up once, when the poller starts): off, every method returns at once."""
        self.tags = tags_for(conn_id, enterprise_id)
        self.conn_tags = tags_for(conn_id)
        self.last_flush: float | None = None
        """``time.monotonic()`` of the last :meth:`flush`; ``None`` before the first."""
        self._events: dict[object, _Sample] = {}  # by status: how many, and a sample of their delays (ms)
        # Events not counted yet: (status, updatedAt, when fired). Counting them one by one as they come costs
        # several times more than in one loop: each event arrives amid the whole fleet's work, with the
        # counting code and data evicted from the CPU's caches.
        self._pending: list[tuple[object, datetime | None, float]] = []

    def due(self) -> bool:
        """True when metrics are on and the last flush is :data:`FLUSH_PERIOD` old (or there was none)."""
        return self.on and (self.last_flush is None or time.monotonic() - self.last_flush >= FLUSH_PERIOD)

    def event(self, status: object, updated_at: datetime | None = None) -> None:
        """A trigger event was fired (called for every event: only noted here, counted at the next flush).

        :param status: ``cleared``, ``released`` or ``error`` (see :data:`EVENT_STATUSES`), or the allocation's
            status as the model holds it (its ``str()`` is taken when sending).
        :param updated_at: The allocation's ``updatedAt`` (timezone-aware); ``None`` for error events.
        """
        if self.on:
            pending = self._pending
            pending.append((status, updated_at, time.time()))
            if len(pending) >= _PENDING_MAX:  # a burst: count now, memory stays bounded
                self._count_pending()

    def _count_pending(self) -> None:
        """Count the noted events by status and offer their delays to the samples."""
        pending, self._pending = self._pending, []
        events = self._events
        for status, updated_at, fired in pending:
            sample = events.get(status)
            if sample is None:
                sample = events[status] = _Sample()
            sample.seen += 1
            if updated_at is not None and sample.seen >= sample.next:
                sample.take(max(0.0, (fired - updated_at.timestamp()) * 1000.0))

    def reconciliation_finds(self, count: int) -> None:
        """The reconciliation found ``count`` final allocations the change feed had missed.

        :param count: How many (nothing is sent for 0).
        """
        if self.on and count > 0:
            self.batch.count(RECONCILIATION_FINDS, self.tags, count)

    def flush(
        self, waiting: int, in_window: int | None = None, limit: int | None = None, rate: float | None = None
    ) -> None:
        """Send what was gathered since the last flush, and set the gauges.

        :param waiting: Allocations the poller waits for now (0 when it stops).
        :param in_window: Requests in the connection's current rate-limit window (``None``: no limiter).
        :param limit: Requests the window allows.
        :param rate: The adaptive limiter's current allowance in requests per window, if it has one.
        """
        if not self.on:
            return
        self.last_flush = time.monotonic()
        self._count_pending()
        events, self._events = self._events, {}
        self.batch.flush()
        backend = _backend if _backend is not None else _resolve()
        if backend is _OFF:
            return
        try:
            for status, sample in events.items():
                backend.incr(_name(EVENTS, str(status)), sample.seen, tags=self.tags)
                name = _name(EVENT_DELAY, str(status))
                for delay_ms in sample.values:
                    backend.timing(name, delay_ms, tags=self.tags)
            backend.gauge(WAITING, waiting, tags=self.tags)
            if in_window is not None:
                backend.gauge(RATE_LIMIT_IN_WINDOW, in_window, tags=self.conn_tags)
            if limit is not None:
                backend.gauge(RATE_LIMIT_LIMIT, limit, tags=self.conn_tags)
            if rate is not None:
                backend.gauge(RATE_LIMIT_RATE, rate, tags=self.conn_tags)
        except Exception:
            _failed()


def sensor_wait(seconds: float, status: str, mode: str, tags: Mapping[str, str]) -> None:
    """A sensor in poke or reschedule mode saw the final status ``seconds`` after its first check.

    :param seconds: From the first check to this one.
    :param status: ``cleared`` or ``released``.
    :param mode: ``poke`` or ``reschedule`` (sent as the ``mode`` tag).
    :param tags: From :func:`tags_for`.
    """
    backend = _backend if _backend is not None else _resolve()
    if backend is _OFF:
        return
    try:
        backend.timing(f"{SENSOR_WAIT_TIME}.{status}", max(0.0, seconds) * 1000.0, tags={**tags, "mode": mode})
    except Exception:
        _failed()


WATCHERS = PREFIX + ".watchers"


class WatcherMetrics:
    """What the asset watchers (``AllocationEventTrigger``) of one connection and enterprise report, in one loop.

    The allocations their events carried, in the families the deferred sensors' events use
    (``oes.events.<status>``, one count per allocation, and ``oes.event_delay.<status>``), and how many watch
    (``oes.watchers``). Like the shared poller, nothing is sent per event: :meth:`flush` sends the gathered
    counts and a sample of the delays every :data:`FLUSH_PERIOD` seconds, together with the connection's request
    metrics and rate-limit gauges (an event-driven deployment may have no poller to send them).

    Used from one event loop: not thread-safe.

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id whose change feed the watchers read.
    """

    __slots__ = ("_events", "conn_tags", "last_flush", "on", "tags", "watchers")

    def __init__(self, conn_id: str, enterprise_id: str) -> None:
        self.on = enabled()
        """Whether metrics are on (looked up once, at creation): off, every method returns at once."""
        self.tags = tags_for(conn_id, enterprise_id)
        self.conn_tags = tags_for(conn_id)
        self.watchers = 0
        """Watchers reading the feed now (their loops keep it up to date); sent as the ``oes.watchers`` gauge."""
        self.last_flush: float | None = None
        self._events: dict[str, _Sample] = {}  # by status: how many allocations, and a sample of their delays (ms)

    def due(self) -> bool:
        """True when metrics are on and the last flush is :data:`FLUSH_PERIOD` old (or there was none)."""
        return self.on and (self.last_flush is None or time.monotonic() - self.last_flush >= FLUSH_PERIOD)

    def emitted(self, allocations: Iterable[Any]) -> None:
        """One trigger event is handed to Airflow with these allocations: count each by status, time it.

        :param allocations: :class:`~airflow_provider_oes.models.Allocation` objects (``status``, ``updated_at``).
        """
        if not self.on:
            return
        now = time.time()
        for allocation in allocations:
            status = str(allocation.status)
            sample = self._events.get(status)
            if sample is None:
                sample = self._events[status] = _Sample()
            sample.seen += 1
            if sample.seen >= sample.next:
                sample.take(max(0.0, (now - allocation.updated_at.timestamp()) * 1000.0))

    def flush(self, requests: Batch | None = None, limiter: Any = None) -> None:
        """Send what was gathered since the last flush, and the gauges.

        :param requests: The connection's request metrics (its client's :class:`Batch`), if it has a client: a
            batch is sent once whoever flushes it (a poller of the same connection may, too).
        :param limiter: The connection's rate limiter (``in_window()``, ``max_requests``, optional ``adaptive``).
        """
        if not self.on:
            return
        self.last_flush = time.monotonic()
        events, self._events = self._events, {}
        if requests is not None:
            requests.flush()
        backend = _backend if _backend is not None else _resolve()
        if backend is _OFF:
            return
        try:
            for status, sample in events.items():
                backend.incr(_name(EVENTS, status), sample.seen, tags=self.tags)
                name = _name(EVENT_DELAY, status)
                for delay_ms in sample.values:
                    backend.timing(name, delay_ms, tags=self.tags)
            backend.gauge(WATCHERS, self.watchers, tags=self.tags)
            if limiter is not None:
                backend.gauge(RATE_LIMIT_IN_WINDOW, limiter.in_window(), tags=self.conn_tags)
                backend.gauge(RATE_LIMIT_LIMIT, limiter.max_requests, tags=self.conn_tags)
                adaptive = getattr(limiter, "adaptive", None)  # only a limiter that adapts has a rate to tell
                if adaptive is not None:
                    backend.gauge(RATE_LIMIT_RATE, adaptive.current(), tags=self.conn_tags)
        except Exception:
            _failed()


def reset(reinitialize: bool = False) -> None:
    """Look at ``[metrics]`` again on the next call (tests change the configuration between cases).

    :param reinitialize: Also rebuild the backend of Airflow's SDK stats from the configuration now, as a
        process start does (a test switching metrics on or off within one process needs this).
    """
    global _backend, _force_init
    _backend = None
    _tags.cache_clear()
    if reinitialize:
        _force_init = True
        _resolve()


def _failed() -> None:
    global _failed_once
    if not _failed_once:
        _failed_once = True
        log.warning("Could not emit an OES metric; metrics errors are not logged again", exc_info=True)


def _resolve() -> Any:
    """Find Airflow's metrics entry point once per process (and after :func:`reset`)."""
    global _backend, _force_init
    try:
        on = _metrics_on()
        stats = _sdk_stats(force=_force_init) if on or _force_init else None
        backend = stats if on else _OFF
    except Exception:
        log.warning("Airflow's metrics could not be set up; OES metrics are off", exc_info=True)
        backend = _OFF
    _force_init = False
    _backend = backend
    return backend


def _metrics_on() -> bool:
    from airflow.sdk import conf

    return any(
        conf.getboolean("metrics", option, fallback=False)
        for option in ("statsd_on", "statsd_datadog_enabled", "otel_on")
    )


def _sdk_stats(force: bool = False) -> Any:
    """The Task SDK's stats entry point, initialized from ``[metrics]`` if nobody in this process did.

    A task runner initializes it before running a task; a triggerer initializes only the copy inside
    airflow-core (the SDK's copy is set up when something imports ``airflow.sdk.serde``, or not at all),
    and a bare process (tests, ``dag.test()``) not at all. Uninitialized, it silently drops every metric.
    """
    global _owns_init
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    if hasattr(stats, "incr"):  # Airflow 3.3+: module functions over one module-level backend
        import importlib

        shared = importlib.import_module(stats.incr.__module__)
        if force or _owns_init or getattr(shared, "_factory", None) is None:
            from airflow.sdk import conf

            stats.initialize(
                factory=stats_utils.get_stats_factory(),
                export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
            )
            _owns_init = True
        return stats
    # Airflow 3.2: the Stats class (its metaclass builds the backend on first use).
    # Typed as Any: the installed (newer) Airflow's stubs describe the 3.3 signatures.
    stats_cls: Any = stats.Stats
    get_stats_factory: Any = stats_utils.get_stats_factory
    if force or _owns_init or type.__getattribute__(stats_cls, "factory") is None:
        stats_cls.initialize(factory=get_stats_factory(stats_cls))
        _owns_init = True
    return stats_cls

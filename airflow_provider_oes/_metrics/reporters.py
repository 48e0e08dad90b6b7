"""Gathering in the triggerer: one sampler, a request batch, and one reporter shape for pollers and watchers.

Nothing is sent per request or per event: counts and a uniform sample of timings are gathered in memory and
sent every :data:`~airflow_provider_oes._metrics.names.FLUSH_PERIOD` seconds by :meth:`Reporter.flush`.
Used from one event loop: not thread-safe.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

import airflow_provider_oes._metrics.backend as metrics_backend
from airflow_provider_oes._metrics.names import (
    EVENT_DELAY,
    EVENTS,
    FLUSH_PERIOD,
    PENDING_MAX,
    RATE_LIMIT_IN_WINDOW,
    RATE_LIMIT_LIMIT,
    RATE_LIMIT_RATE,
    RECONCILIATION_FINDS,
    TIMING_SAMPLES,
    WAITING,
    WATCHERS,
    metric_name,
    tags_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from airflow_provider_oes._rate_limit import LimiterStats


class LimiterGauges(Protocol):
    """What a reporter reads of a rate limiter (:class:`~airflow_provider_oes._rate_limit.RateLimiter`)."""

    def stats(self) -> LimiterStats: ...


class Sample:
    """A count, and a uniform sample of at most :data:`TIMING_SAMPLES` of the values counted.

    Reservoir sampling with geometric skips (Li's "Algorithm L"): an item that does not enter the sample
    costs one comparison, and its value need not be computed (``seen >= next`` says whether to :meth:`take` it).
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


class Batch:
    """Counters and timings gathered in memory and sent together by :meth:`flush`: one increment per name and
    tags with the exact count, and a :class:`Sample` of the timings."""

    __slots__ = ("_counts", "_samples", "on")

    def __init__(self) -> None:
        self.on = metrics_backend.enabled()
        """Whether metrics are on (looked up once, at creation): off, every method returns at once."""
        # Keyed by name and the identity of a tags_for() mapping (cached: one object per connection and
        # enterprise); the mapping itself rides along.
        self._counts: dict[tuple[str, int], list[Any]] = {}
        self._samples: dict[tuple[str, int], tuple[Mapping[str, str], Sample]] = {}

    @property
    def gathered(self) -> bool:
        """True when anything waits to be sent."""
        return bool(self._counts or self._samples)

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
            entry = self._samples[(name, id(tags))] = (tags, Sample())
        sample = entry[1]
        sample.seen += 1
        if sample.seen >= sample.next:
            sample.take(ms)

    def flush(self) -> None:
        """Send everything gathered since the last flush, and start afresh."""
        if not self.on or not (self._counts or self._samples):
            return
        counts, samples = self._counts, self._samples
        self._counts, self._samples = {}, {}
        backend = metrics_backend.current()
        if backend is metrics_backend.OFF:
            return
        try:
            for (name, _), (tags, n) in counts.items():
                backend.incr(name, n, tags=tags)
            for (name, _), (tags, sample) in samples.items():
                for ms in sample.values:
                    backend.timing(name, ms, tags=tags)
        except Exception:
            metrics_backend.failed()


class Reporter:
    """Events by status (a count and a :class:`Sample` of their delays), one gauge, and the connection's gauges.

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id.
    :param gauge: The name of this reporter's own gauge; its value is :attr:`gauge_value`.
    """

    __slots__ = ("_events", "conn_tags", "gauge", "gauge_value", "last_flush", "on", "tags")

    def __init__(self, conn_id: str, enterprise_id: str, gauge: str) -> None:
        self.on = metrics_backend.enabled()
        """Whether metrics are on (looked up once, at creation): off, every method returns at once."""
        self.tags = tags_for(conn_id, enterprise_id)
        self.conn_tags = tags_for(conn_id)
        self.gauge = gauge
        self.gauge_value = 0
        self.last_flush: float | None = None
        """``time.monotonic()`` of the last :meth:`flush`; ``None`` before the first."""
        self._events: dict[object, Sample] = {}

    def due(self) -> bool:
        """True when metrics are on and the last flush is :data:`FLUSH_PERIOD` old (or there was none)."""
        return self.on and (self.last_flush is None or time.monotonic() - self.last_flush >= FLUSH_PERIOD)

    def _count(self, status: object, updated_at: datetime | None, fired: float) -> None:
        sample = self._events.get(status)
        if sample is None:
            sample = self._events[status] = Sample()
        sample.seen += 1
        if updated_at is not None and sample.seen >= sample.next:
            sample.take(max(0.0, (fired - updated_at.timestamp()) * 1000.0))

    def _gather(self) -> None:
        """Hook for subclasses: count what was only noted, before a flush."""

    def flush(self, requests: Batch | None = None, limiter: LimiterGauges | None = None) -> None:
        """Send what was gathered since the last flush, the gauge, and the connection's gauges.

        :param requests: The connection's request metrics (its client's :class:`Batch`): sent once, whoever
            flushes it.
        :param limiter: The connection's rate limiter, for the rate-limit gauges.
        """
        if not self.on:
            return
        self.last_flush = time.monotonic()
        self._gather()
        events, self._events = self._events, {}
        if requests is not None:
            requests.flush()
        backend = metrics_backend.current()
        if backend is metrics_backend.OFF:
            return
        try:
            for status, sample in events.items():
                backend.incr(metric_name(EVENTS, str(status)), sample.seen, tags=self.tags)
                name = metric_name(EVENT_DELAY, str(status))
                for delay_ms in sample.values:
                    backend.timing(name, delay_ms, tags=self.tags)
            backend.gauge(self.gauge, self.gauge_value, tags=self.tags)
            if limiter is not None:
                stats = limiter.stats()
                backend.gauge(RATE_LIMIT_IN_WINDOW, stats.in_window, tags=self.conn_tags)
                backend.gauge(RATE_LIMIT_LIMIT, stats.limit, tags=self.conn_tags)
                backend.gauge(RATE_LIMIT_RATE, stats.rate, tags=self.conn_tags)
        except Exception:
            metrics_backend.failed()


class PollerMetrics(Reporter):
    """What one shared poller reports: its events and reconciliation finds, and ``oes.allocations.waiting``.

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id of the poller.
    """

    __slots__ = ("_pending", "batch")

    def __init__(self, conn_id: str, enterprise_id: str) -> None:
        super().__init__(conn_id, enterprise_id, WAITING)
        self.batch = Batch()
        # Events not counted yet: (status, updatedAt, when fired); counted in one loop at the flush (cheaper
        # than one by one amid the fleet's work).
        self._pending: list[tuple[object, datetime | None, float]] = []

    @property
    def waiting(self) -> int:
        """Allocations the poller waits for; sent as the ``oes.allocations.waiting`` gauge."""
        return self.gauge_value

    @waiting.setter
    def waiting(self, value: int) -> None:
        self.gauge_value = value

    @property
    def pending(self) -> int:
        """Events noted and not counted yet (bounded by :data:`PENDING_MAX`)."""
        return len(self._pending)

    @property
    def gathered(self) -> bool:
        """True when anything waits to be sent (events noted or counted, reconciliation finds)."""
        return bool(self._pending or self._events or self.batch.gathered)

    def event(self, status: object, updated_at: datetime | None = None) -> None:
        """A trigger event was fired (only noted here, counted at the next flush).

        :param status: ``cleared``, ``released`` or ``error``, or the allocation's status as the model holds it.
        :param updated_at: The allocation's ``updatedAt`` (timezone-aware); ``None`` for error events.
        """
        if self.on:
            pending = self._pending
            pending.append((status, updated_at, time.time()))
            if len(pending) >= PENDING_MAX:  # a burst: count now, memory stays bounded
                self._gather()

    def _gather(self) -> None:
        pending, self._pending = self._pending, []
        for status, updated_at, fired in pending:
            self._count(status, updated_at, fired)

    def reconciliation_finds(self, count: int) -> None:
        """The reconciliation found ``count`` final allocations the change feed had missed (0: nothing sent)."""
        if self.on and count > 0:
            self.batch.count(RECONCILIATION_FINDS, self.tags, count)

    def flush(self, requests: Batch | None = None, limiter: LimiterGauges | None = None) -> None:
        """As :meth:`Reporter.flush`, with this poller's own batch (reconciliation finds) sent first."""
        if self.on:
            self.batch.flush()
        super().flush(requests, limiter)


class WatcherMetrics(Reporter):
    """What the asset watchers of one connection and enterprise report in one loop: the allocations their
    events carried (``oes.events.<status>``, ``oes.event_delay.<status>``) and ``oes.watchers``.

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id whose change feed the watchers read.
    """

    __slots__ = ()

    def __init__(self, conn_id: str, enterprise_id: str) -> None:
        super().__init__(conn_id, enterprise_id, WATCHERS)

    @property
    def watchers(self) -> int:
        """Watchers reading the feed now; sent as the ``oes.watchers`` gauge."""
        return self.gauge_value

    @watchers.setter
    def watchers(self, value: int) -> None:
        self.gauge_value = value

    def emitted(self, allocations: Iterable[Any]) -> None:
        """One trigger event is handed to Airflow with these allocations: count each by status, time it."""
        if not self.on:
            return
        now = time.time()
        for allocation in allocations:
            self._count(str(allocation.status), allocation.updated_at, now)

"""The change feed of an enterprise: newly final allocations, read newest first, at a cost that follows changes.

BitGo's list endpoint filters by status and sorts by update time, and a final status never changes again. So
instead of asking about every waiting allocation, one reader per enterprise asks, once per interval::

    GET .../clients/allocations?statuses=cleared,released&sortField=updatedAt&sortDirection=DESC
        &pageSize=P&pageNumber=0,1,...

and pages on only until it reaches rows older than its *cutoff* (the watermark minus the overlap). At steady
state that is one request per interval per enterprise, whatever the number of waiting allocations.

One :class:`ChangeFeed` exists per ``(connection id, enterprise id, FeedQuery)`` per event loop. It shares the
connection's HTTP client and rate limiter with the poller of :mod:`~airflow_provider_oes.triggers._poller`
(every feed request waits for the limiter like any other), polls in its own task while it has subscribers,
and stops (releasing the connection) when the last one leaves.

API (for the poller's feed strategy and for ``AllocationEventTrigger``)
------------------------------------------------------------------------
::

    feed = await open_feed(conn_id, enterprise_id, FeedQuery(statuses=("cleared",), types=("allocation",)))
    sub = feed.subscribe(interval=5.0, since=None)      # no callback: batches are queued for `async for`
    try:
        async for batch in sub:                          # one FeedBatch per page read (or per failed poll)
            if batch.error is not None: ...              # transient or permanent; the feed keeps polling
            for row in batch.rows: ...                   # FeedRow(id, updated_at, record): newest first
            if batch.final: persist(batch.resume_from)   # a whole poll is done: safe point to remember
    finally:
        sub.close()                                      # synchronous; the last one stops the feed

    sub = feed.subscribe(on_batch, interval=5.0)         # or a synchronous callback, called in the loop

* :func:`open_feed` returns the loop's feed for that key, creating it (and the shared connection) on first use.
  ``FeedQuery`` holds the list filters (``statuses`` default ``cleared,released``; optional ``types``,
  ``currencies``, ``connection_ids``, ``partner_ids``); equal queries share one feed.
* ``subscribe(on_batch=None, *, interval, since=None)``: the feed polls at the smallest ``interval`` of its
  subscriptions (``Subscription.interval`` may be changed later). ``since`` (server time, epoch seconds):
  hand this subscription every matching row with ``updatedAt >= since - overlap``: rows the feed already
  holds are replayed at once (``FeedBatch.replay``), and if the feed has not read back that far it pages back
  on its next poll. ``since=None`` means "from now": the bound is the cutoff of the feed's current (or first)
  poll, i.e. the server's "now" minus ``overlap``. ``since=ALL``: no bound and no backfill (the poller's
  choice: an old row is still a true final state). Rows below a subscription's bound are never handed to it.
* ``FeedBatch``: ``rows`` (new to the feed, or replayed; each row is handed to a subscription at most once
  while the feed holds it, i.e. for ``retention`` seconds), ``final`` (last page of a poll), ``resume_from``
  (on final batches: pass it as ``since`` after a restart to lose nothing that came after this batch),
  ``polled_at`` (the server's ``Date`` of the poll's first page), ``error`` (an ``OESError``; then no rows).
  ``is_unsupported(batch.error)`` says the server rejected the feed's query (HTTP 400/404) or does not sort by
  ``updatedAt``: the feed itself keeps trying at a slow pace; the poller switches to id batches.
* ``feed.vouches_for(last_check)``: True when every change after ``last_check`` (server time) is, or will be,
  seen by this feed: it has read continuously since ``last_check - overlap`` and still holds those rows.
  ``feed.lookup(allocation_id)`` returns the held row for an id (newest state), if any.
* ``feed.request_backfill(to, max_pages=None)``: on the next poll (started at once) page back to ``to`` as
  well, spending at most ``max_pages`` pages beyond the normal cutoff; the feed's coverage then reaches
  back as far as it got.

The rules
---------
* **Watermark from the server's clocks.** After a complete poll the watermark becomes the ``Date`` of that
  poll's first page (or, from a server that sends no ``Date``, the newest ``updatedAt`` it saw); it never
  moves back. The next poll's cutoff is ``watermark - overlap``. The local clock is never used.
* **No change missed.** Sorted newest first, a row that becomes final while the feed pages is inserted above
  the page being read: rows below shift down and are read twice (harmless), never skipped. A row committed
  after page 0 was served has ``updatedAt >= Date(page 0) - skew - commit lag``; the next poll reaches back to
  ``Date(page 0) - overlap``. So the feed sees every change as long as the server's ``Date`` runs at most
  ``overlap`` seconds ahead of the clock that stamps ``updatedAt``, plus the commit lag (default overlap
  30 s: 30 s of skew and commit lag together; a ``Date`` running *behind* ``updatedAt`` costs nothing).
  Rows seen for the first time although their ``updatedAt`` lies before the previous poll's ``Date`` are
  counted in ``ChangeFeed.late_rows`` with the worst lateness (``max_lateness``: the skew plus commit lag
  actually seen) and logged, as a warning once it exceeds half the overlap. Rows seen for the first time
  below the cutoff (on the last page read) are still handed out: they are true, final states.
* **Duplicates are harmless.** Rows are deduplicated by ``(id, updatedAt, status)`` for ``retention`` seconds
  (default 900) behind the watermark; older rows are neither held nor handed out again, except by a backfill.
* **Order is checked.** A page that is not sorted newest first (a server ignoring ``sortField``) would make
  the cutoff meaningless: it is reported as an unsupported feed, never trusted.
* **Cost.** With page size ``P`` (default 1000) and ``r`` changes per second, a poll reads
  ``r * (interval + overlap + 1) / P`` pages: one request per 5 s interval up to 27 changes per second with the
  defaults, two up to 55. A burst pages through at the rate limiter's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api import parse_timestamp
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError, OESInvalidRequestError, OESResponseError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from airflow_provider_oes.triggers._poller import _Connection

log = logging.getLogger(__name__)

DEFAULT_STATUSES: tuple[str, ...] = ("cleared", "released")
"""The final statuses: the poller's feed reads these."""
DEFAULT_OVERLAP = 30.0
"""Seconds each poll reaches back behind the watermark, for clock skew and commit lag together."""
DEFAULT_PAGE_SIZE = 1000
"""Rows per feed page (the simulator's maximum; one page per interval up to 27 changes per second)."""
DEFAULT_RETENTION = 900.0
"""Seconds behind the watermark for which rows are held (deduplication, replay, vouching for new triggers)."""
MAX_ERROR_BACKOFF = 300.0
"""Longest pause between polls while the feed keeps failing permanently (401/403/unsupported)."""
ALL = -math.inf
"""``subscribe(since=ALL)``: no lower bound and no backfill: every row the feed reads that is new to it."""
SORT_FIELD = "updatedAt"
SORT_DIRECTION = "DESC"

_KNOWN_STATUSES = ("cleared", "released", "reserved")
_KNOWN_TYPES = ("allocation", "deallocation")
_UNSUPPORTED_STATUS_CODES = frozenset({400, 404})


class FeedOrderError(OESResponseError):
    """The list endpoint did not sort by ``updatedAt`` newest first, so the feed cannot trust its cutoff."""


def is_unsupported(exc: BaseException | None) -> bool:
    """True when the server rejected the feed's query (HTTP 400 or 404) or ignores its sort order.

    :param exc: The error of a :class:`FeedBatch`, if any.
    """
    if isinstance(exc, FeedOrderError):
        return True
    return isinstance(exc, OESError) and exc.status_code in _UNSUPPORTED_STATUS_CODES


def _tuple(name: str, values: Iterable[str] | str | None, allowed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    cleaned: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip() or "," in item:
            raise OESInvalidRequestError(f"{name} must be non-empty strings without commas, got {item!r}")
        if allowed is not None and item not in allowed:
            raise OESInvalidRequestError(f"{name} may only contain {', '.join(allowed)}; got {item!r}")
        cleaned.append(item.strip())
    if not cleaned:
        raise OESInvalidRequestError(f"{name} must not be empty (leave it out to not filter on it)")
    return tuple(sorted(set(cleaned)))


@dataclass(frozen=True)
class FeedQuery:
    """The list filters of a feed; equal queries (in any order) share one feed.

    :param statuses: Statuses to read (``statuses``); default the final ones, ``cleared`` and ``released``.
    :param types: ``allocation`` and/or ``deallocation`` (``types``); ``None``: both.
    :param currencies: Only these currencies (``currencies``).
    :param connection_ids: Only these connection ids (``connectionIds``).
    :param partner_ids: Only these partner ids (``partnerIds``).
    """

    statuses: tuple[str, ...] = DEFAULT_STATUSES
    types: tuple[str, ...] | None = None
    currencies: tuple[str, ...] | None = None
    connection_ids: tuple[str, ...] | None = None
    partner_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Normalised (sorted, deduplicated tuples) so that the query is a stable dict key.
        object.__setattr__(self, "statuses", _tuple("statuses", self.statuses, _KNOWN_STATUSES))
        object.__setattr__(self, "types", _tuple("types", self.types, _KNOWN_TYPES))
        object.__setattr__(self, "currencies", _tuple("currencies", self.currencies, None))
        object.__setattr__(self, "connection_ids", _tuple("connection_ids", self.connection_ids, None))
        object.__setattr__(self, "partner_ids", _tuple("partner_ids", self.partner_ids, None))

    def filters(self) -> dict[str, tuple[str, ...]]:
        """The optional list filters by their query-parameter name (``statuses`` apart)."""
        named = {
            "types": self.types,
            "currencies": self.currencies,
            "connectionIds": self.connection_ids,
            "partnerIds": self.partner_ids,
        }
        return {name: values for name, values in named.items() if values is not None}

    def describe(self) -> str:
        """The query as a short text for logs."""
        parts = [f"statuses={','.join(self.statuses or ())}"]
        parts += [f"{name}={','.join(values)}" for name, values in self.filters().items()]
        return "&".join(parts)


class FeedRow:
    """One row of the feed.

    A feed holds up to ``retention`` seconds of rows (20,000 at 20 changes per second): it keeps each record as
    compact JSON text, a fifth of the memory of the parsed dict, and parses it again only when asked.

    :param id: The allocation id as the API sent it.
    :param updated_at: Its ``updatedAt`` (server clock) in epoch seconds.
    :param record: The record exactly as the API sent it (validate it before use), or its JSON text.
    """

    __slots__ = ("_record", "id", "status", "updated_at")

    def __init__(self, id: str, updated_at: float, record: dict[str, Any] | str) -> None:
        self.id = id
        self.updated_at = updated_at
        self._record = record
        self.status: Any = record.get("status") if isinstance(record, dict) else self.record.get("status")
        """The record's raw ``status``."""

    def __repr__(self) -> str:
        return f"FeedRow(id={self.id!r}, updated_at={self.updated_at!r}, status={self.status!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeedRow):
            return NotImplemented
        return (self.id, self.updated_at, self.status) == (other.id, other.updated_at, other.status)

    def __hash__(self) -> int:
        return hash((self.id, self.updated_at, self.status))

    @property
    def record(self) -> dict[str, Any]:
        """The record as the API sent it (a fresh dict each time when held as text)."""
        record = self._record
        if isinstance(record, str):
            parsed: dict[str, Any] = json.loads(record)
            return parsed
        return record

    def compact(self) -> FeedRow:
        """The same row holding its record as JSON text (what the feed keeps)."""
        if isinstance(self._record, str):
            return self
        return FeedRow(self.id, self.updated_at, json.dumps(self._record, separators=(",", ":")))


@dataclass(frozen=True)
class FeedBatch:
    """What a subscription receives after each page read (or failed poll).

    :param rows: Rows new to this subscription, newest first.
    :param final: True on the last batch of a complete poll.
    :param resume_from: On final batches: the server time to pass as ``since`` after a restart.
    :param polled_at: The server's ``Date`` of the poll's first page (epoch seconds), if it sent one.
    :param pages: Pages read so far in this poll.
    :param error: Why the poll failed (then there are no rows); the feed keeps polling.
    :param replay: True for rows replayed from what the feed held when the subscription started.
    """

    rows: tuple[FeedRow, ...] = ()
    final: bool = False
    resume_from: float | None = None
    polled_at: float | None = None
    pages: int = 0
    error: OESError | None = None
    replay: bool = False


class Subscription:
    """One subscriber's handle on a :class:`ChangeFeed`. Iterate it (queue mode) or pass a callback.

    :param feed: The feed.
    :param on_batch: Synchronous callback for each batch; ``None`` queues batches for ``async for``.
    :param interval: Seconds between polls this subscriber wants (the feed uses the smallest).
    :param floor: Rows with ``updatedAt`` below this (epoch seconds) are not handed to it; ``None``: no bound.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        on_batch: Callable[[FeedBatch], None] | None,
        interval: float,
        floor: float | None,
    ) -> None:
        self.feed = feed
        self.interval = interval
        self.floor = floor
        self._on_batch = on_batch
        self._queue: asyncio.Queue[FeedBatch] | None = asyncio.Queue() if on_batch is None else None
        self.closed = False
        self.floor_pending = False
        """True until the feed sets the bound of a ``since=None`` subscription (at its next cutoff)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feed={self.feed!r}, interval={self.interval!r}, floor={self.floor!r})"

    def _hand(self, batch: FeedBatch) -> None:
        if self.closed:
            return
        if self.floor is not None and batch.rows:
            rows = tuple(row for row in batch.rows if row.updated_at >= self.floor)
            if len(rows) != len(batch.rows):
                batch = FeedBatch(
                    rows, batch.final, batch.resume_from, batch.polled_at, batch.pages, batch.error, batch.replay
                )
        if self._on_batch is not None:
            self._on_batch(batch)
        elif self._queue is not None:
            self._queue.put_nowait(batch)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> FeedBatch:
        if self._queue is None:
            raise TypeError("this subscription delivers to its callback; it cannot be iterated")
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        return await self._queue.get()

    def close(self) -> None:
        """Leave the feed (idempotent). Synchronous, so it also works in a cancelled coroutine's ``finally``."""
        if not self.closed:
            self.closed = True
            self.feed._unsubscribe(self)


_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, FeedQuery], ChangeFeed]] = (
    weakref.WeakKeyDictionary()
)


def _feeds() -> dict[tuple[str, str, FeedQuery], ChangeFeed]:
    loop = asyncio.get_running_loop()
    feeds = _REGISTRIES.get(loop)
    if feeds is None:
        feeds = _REGISTRIES[loop] = {}
    return feeds


def get_feed(conn_id: str, enterprise_id: str, query: FeedQuery | None = None) -> ChangeFeed | None:
    """The running feed of this event loop for the key, if any (for tests and logs)."""
    return _feeds().get((conn_id, enterprise_id, query or FeedQuery()))


async def open_feed(conn_id: str, enterprise_id: str, query: FeedQuery | None = None) -> ChangeFeed:
    """The loop's feed for a connection, enterprise and query; created (with the shared connection) on first use.

    The feed starts polling with its first subscription and stops when the last one closes.

    :param conn_id: Airflow connection id of type ``oes``.
    :param enterprise_id: Validated enterprise id.
    :param query: The list filters; default the final statuses of every allocation.
    :raises OESError: when the connection cannot be read.
    """
    from airflow_provider_oes.triggers._poller import _connection

    key = (conn_id, enterprise_id, query or FeedQuery())
    feed = _feeds().get(key)
    if feed is not None and not feed.connection.client.is_closed:
        return feed
    connection = await _connection(conn_id)
    feed = _feeds().get(key)  # another coroutine may have created it while the connection was read
    if feed is None or feed.connection.client.is_closed:  # a feed opened but never subscribed outlives its client
        settings = connection.settings
        feed = ChangeFeed(
            key,
            connection,
            overlap=float(getattr(settings, "feed_overlap", DEFAULT_OVERLAP)),
            page_size=int(getattr(settings, "feed_page_size", DEFAULT_PAGE_SIZE)),
        )
        _feeds()[key] = feed
    return feed


class ChangeFeed:
    """Reads newly changed rows of one list query, newest first, down to the watermark minus the overlap.

    Build it with :func:`open_feed` (one per key per event loop); see the module docstring for the API.

    :param key: ``(conn_id, enterprise_id, query)``.
    :param connection: The loop's shared client and rate limiter of the connection.
    :param overlap: Seconds each poll reaches back behind the watermark (clock skew plus commit lag).
    :param page_size: Rows per page.
    :param retention: Seconds behind the watermark for which rows are held.
    """

    def __init__(
        self,
        key: tuple[str, str, FeedQuery],
        connection: _Connection,
        *,
        overlap: float = DEFAULT_OVERLAP,
        page_size: int = DEFAULT_PAGE_SIZE,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        if not (math.isfinite(overlap) and overlap >= 0):
            raise OESInvalidRequestError(f"the feed overlap must be a number of seconds >= 0, got {overlap!r}")
        if page_size < 1:
            raise OESInvalidRequestError(f"the feed page size must be at least 1, got {page_size!r}")
        self.key = key
        self.conn_id, self.enterprise_id, self.query = key
        self.connection = connection
        self.overlap = overlap
        self.page_size = page_size
        self.retention = max(retention, overlap)
        self.watermark: float | None = None
        """Server time (epoch s) of the first page of the last complete poll: the next poll's cutoff is this
        minus ``overlap``."""
        self.covered_from: float | None = None
        """The feed has read every row with ``updatedAt`` at or after this (epoch s), continuously since.
        ``None`` before the first complete poll; ``-inf`` once it read the whole list."""
        self._held: dict[str, FeedRow] = {}
        self._released = False
        self._subs: list[Subscription] = []
        self._backfill_to: float | None = None
        self._backfill_pages: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._errors_in_row = 0
        self._logged_error: str | None = None
        self.polls = 0
        """Complete polls."""
        self.pages = 0
        """Pages requested (every request of the feed)."""
        self.late_rows = 0
        """Rows seen for the first time although their ``updatedAt`` lies before the previous poll's server time."""
        self.max_lateness = 0.0
        """The most seconds such a row's ``updatedAt`` lay before the previous poll's server time."""
        self.last_error: OESError | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(conn_id={self.conn_id!r}, enterprise_id={self.enterprise_id!r}, "
            f"query={self.query.describe()!r}, subscriptions={len(self._subs)})"
        )

    # ------------------------------------------------------------------ subscriptions

    @property
    def horizon(self) -> float | None:
        """Rows with ``updatedAt`` below this are no longer held (``None`` before the first poll)."""
        return None if self.watermark is None else self.watermark - self.retention

    @property
    def closed(self) -> bool:
        """True once the feed stopped (its task ended, or its last subscriber left): its subscriptions get
        nothing more, and :func:`open_feed` hands out a new feed for the key."""
        return self._closed

    def subscribe(
        self,
        on_batch: Callable[[FeedBatch], None] | None = None,
        *,
        interval: float,
        since: float | None = None,
    ) -> Subscription:
        """Start receiving batches (see the module docstring); starts the feed's task if needed.

        :param on_batch: Synchronous callback; ``None`` to iterate the subscription instead.
        :param interval: Seconds between polls this subscriber wants.
        :param since: Server time (epoch s): hand every row with ``updatedAt >= since - overlap``.
        """
        if self._closed:  # pragma: no cover - open_feed never hands out a closed feed
            raise RuntimeError("this change feed has stopped")
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval > 0):
            raise OESInvalidRequestError(f"the feed interval must be a positive number of seconds, got {interval!r}")
        if since is None:
            floor = None if self.watermark is None else self.watermark - self.overlap
        elif since == ALL:
            floor = None
        else:
            floor = since - self.overlap
        sub = Subscription(self, on_batch, float(interval), floor)
        sub.floor_pending = since is None and floor is None
        self._subs.append(sub)
        if since is not None and floor is not None:
            # What the feed holds comes at once; what lies further back than it has read comes from a backfill
            # (which hands out only rows the feed does not hold: the two never overlap).
            rows = tuple(sorted((r for r in self._held.values() if r.updated_at >= floor), key=_newest_first))
            if rows:
                asyncio.get_running_loop().call_soon(sub._hand, FeedBatch(rows, replay=True))
            if self.covered_from is None or self.horizon is None or floor < max(self.covered_from, self.horizon):
                self.request_backfill(floor)
        loop = asyncio.get_running_loop()
        if self._task is None:
            self.connection.pollers += 1  # the connection's client stays open while the feed polls
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"oes-feed-{self.conn_id}-{self.enterprise_id}")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        if not self._subs and not self._closed:
            # Nobody is listening: stop now, even mid-poll. Leave the registry at once so that a subscriber
            # arriving meanwhile starts a fresh feed instead of joining this one.
            self._detach()
            if self._task is not None:
                self._task.cancel()

    def vouches_for(self, last_check: float | None) -> bool:
        """True when every change after ``last_check`` (server time, epoch s) is, or will be, seen by this feed.

        :param last_check: When the allocation was last seen not final (server time); ``None``: never.
        """
        if last_check is None or self.covered_from is None or self.horizon is None or self._closed:
            return False
        return last_check - self.overlap >= max(self.covered_from, self.horizon)

    def held_since(self, moment: float) -> int:
        """How many held rows have ``updatedAt`` at or after ``moment`` (the change rate, for cost estimates)."""
        return sum(1 for row in self._held.values() if row.updated_at >= moment)

    def lookup(self, allocation_id: str) -> FeedRow | None:
        """The newest row the feed holds for an allocation id, if any.

        :param allocation_id: The id (compared case-insensitively).
        """
        return self._held.get(allocation_id.lower())

    def request_backfill(self, to: float, max_pages: int | None = None) -> None:
        """Read back to ``to`` (server time, epoch s) on the next poll, which starts at once.

        :param to: How far back to read.
        :param max_pages: Most pages to spend beyond the normal cutoff; ``None``: as many as needed.
        """
        if self.covered_from is not None and to >= self.covered_from:
            if self._wake is not None:
                self._wake.set()
            return
        self._backfill_to = to if self._backfill_to is None else min(self._backfill_to, to)
        if max_pages is not None:
            self._backfill_pages = max_pages if self._backfill_pages is None else max(self._backfill_pages, max_pages)
        else:
            self._backfill_pages = None
        if self._wake is not None:
            self._wake.set()

    def wake(self) -> None:
        """Poll now instead of at the end of the interval."""
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ polling

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        try:
            log.info(
                "OES change feed started for connection %r, enterprise %r (%s): pages of %d, overlap %g s",
                self.conn_id,
                self.enterprise_id,
                self.query.describe(),
                self.page_size,
                self.overlap,
            )
            while self._subs:
                started = loop.time()
                self._wake.clear()
                error = await self._poll()
                if not self._subs:
                    break
                interval = min(sub.interval for sub in self._subs)
                if error is None:
                    self._errors_in_row = 0
                    pause = interval
                elif is_transient(error):
                    pause = interval
                else:
                    # Permanent (401/403/400/404...): keep trying, slowly, for subscribers that cannot fall back.
                    self._errors_in_row += 1
                    pause = min(MAX_ERROR_BACKOFF, interval * 2 ** min(self._errors_in_row, 10))
                delay = started + pause - loop.time()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
        except Exception as exc:
            log.exception("The OES change feed for %r stopped unexpectedly", self.key)
            error = OESResponseError(f"the OES change feed for enterprise {self.enterprise_id!r} failed: {exc!r}")
            self._hand_all(FeedBatch(error=error, final=True))
        finally:
            self._detach()
            await self._release()

    def _detach(self) -> None:
        self._closed = True
        feeds = _REGISTRIES.get(asyncio.get_running_loop())
        if feeds is not None and feeds.get(self.key) is self:
            del feeds[self.key]

    async def _release(self) -> None:
        from airflow_provider_oes.triggers._poller import release_connection

        if not self._released and self._task is not None:
            self._released = True
            await release_connection(self.conn_id, self.connection)

    def _hand_all(self, batch: FeedBatch) -> None:
        for sub in list(self._subs):
            sub._hand(batch)

    async def _poll(self) -> OESError | None:
        """One poll: page down to the cutoff (and any backfill); hand new rows out page by page."""
        client = self.connection.client
        query = self.query
        previous_watermark = self.watermark
        cutoff = None if previous_watermark is None else previous_watermark - self.overlap
        backfill_to, backfill_budget = self._backfill_to, self._backfill_pages
        horizon = self.horizon
        first_date: float | None = None
        newest: float | None = None
        page_number = 0
        beyond_cutoff = 0
        reached: float | None = None
        ended = False  # the list ran out (short page)
        while True:
            try:
                page = await client.list_allocations_page(
                    self.enterprise_id,
                    statuses=query.statuses,
                    filters=query.filters(),
                    sort_field=SORT_FIELD,
                    sort_direction=SORT_DIRECTION,
                    page_number=page_number,
                    page_size=self.page_size,
                )
            except OESError as exc:
                self.pages += 1
                return self._failed(exc)
            self.pages += 1
            if page_number == 0:
                first_date = page.server_time
            fresh: list[FeedRow] = []
            oldest_on_page: float | None = None
            # Order is checked within a page only: across pages, rows that changes shifted down repeat.
            previous_ts: float | None = None
            for record in page.records:
                row = _row(record)
                if row is None:
                    continue  # no usable id or updatedAt: it cannot be placed; the poller's id checks cover it
                if previous_ts is not None and row.updated_at > previous_ts + 1e-6:
                    return self._failed(
                        FeedOrderError(
                            f"the OES API did not sort the allocations of enterprise {self.enterprise_id!r} by "
                            f"updatedAt newest first (sortField={SORT_FIELD}&sortDirection={SORT_DIRECTION}); "
                            "the change feed cannot rely on it",
                            enterprise_id=self.enterprise_id,
                        )
                    )
                previous_ts = oldest_on_page = row.updated_at
                if newest is None:
                    newest = row.updated_at
                if self._take(row, horizon, backfill_to):
                    fresh.append(row)
                    if previous_watermark is not None and row.updated_at < previous_watermark:
                        self._late(row, previous_watermark)
            if cutoff is None:
                # First poll: reach back `overlap` behind the server's now (or its newest row, without a Date).
                anchor = first_date if first_date is not None else newest
                cutoff = None if anchor is None else anchor - self.overlap
                if horizon is None and anchor is not None:
                    horizon = anchor - self.retention
            for sub in self._subs:
                if sub.floor_pending:  # "from now" subscriptions start at this poll's cutoff
                    sub.floor, sub.floor_pending = cutoff, False
            page_number += 1
            short = len(page.records) < self.page_size
            past_cutoff = cutoff is None or (oldest_on_page is not None and oldest_on_page < cutoff)
            if past_cutoff and not short:
                beyond_cutoff += 1
            done = short
            if not done and past_cutoff:
                if backfill_to is None or (oldest_on_page is not None and oldest_on_page < backfill_to):
                    done = True
                elif backfill_budget is not None and beyond_cutoff > backfill_budget:
                    done = True
                    reached = oldest_on_page
            if short:
                ended = True
            if done:
                self._complete(first_date, newest, cutoff, backfill_to, reached, ended)
                self._hand_all(
                    FeedBatch(
                        tuple(fresh),
                        final=True,
                        resume_from=self.watermark,
                        polled_at=first_date,
                        pages=page_number,
                    )
                )
                return None
            if fresh:
                self._hand_all(FeedBatch(tuple(fresh), polled_at=first_date, pages=page_number))

    def _take(self, row: FeedRow, horizon: float | None, backfill_to: float | None) -> bool:
        """Hold the row if it is new; True when it should be handed out."""
        key = row.id.lower()
        held = self._held.get(key)
        if held is not None and (
            held.updated_at > row.updated_at or (held.updated_at == row.updated_at and held.status == row.status)
        ):
            return False  # seen (a status change without a new updatedAt is still a change)
        if horizon is not None and row.updated_at < horizon and (backfill_to is None or row.updated_at < backfill_to):
            return False  # older than what the feed holds: handed out long ago (or to be caught by a backfill)
        self._held[key] = row.compact()
        return True

    def _late(self, row: FeedRow, previous_watermark: float) -> None:
        # The row was not visible when the previous poll's first page was served, although its updatedAt lies
        # before that page's Date: commit lag plus clock skew of at least `lateness`. The overlap covers it up to
        # `overlap` seconds; warn well before that runs out.
        lateness = previous_watermark - row.updated_at
        self.late_rows += 1
        if lateness > self.max_lateness:
            self.max_lateness = lateness
            log.log(
                logging.WARNING if lateness > self.overlap / 2 else logging.INFO,
                "OES change feed %r/%r: allocation %s became visible with updatedAt %.1f s before the previous "
                "poll's server time (overlap %g s): commit lag plus clock skew. Beyond the overlap a change could "
                "be missed by the feed (the reconciliation would still catch it): raise the feed overlap if this "
                "comes close to it.",
                self.conn_id,
                self.enterprise_id,
                row.id,
                lateness,
                self.overlap,
            )

    def _complete(
        self,
        first_date: float | None,
        newest: float | None,
        cutoff: float | None,
        backfill_to: float | None,
        reached: float | None,
        ended: bool,
    ) -> None:
        self.polls += 1
        self.last_error = None
        self._logged_error = None
        anchor = first_date if first_date is not None else newest
        if anchor is not None and (self.watermark is None or anchor > self.watermark):
            self.watermark = anchor
        covered: float | None
        if ended:
            covered = -math.inf
        elif reached is not None:
            covered = reached + 1e-6  # rows at exactly `reached` may continue on the next page
        else:
            covered = cutoff if backfill_to is None or cutoff is None else min(cutoff, backfill_to)
        if covered is not None and (self.covered_from is None or covered < self.covered_from):
            self.covered_from = covered
        if backfill_to is not None:
            self._backfill_to = None
            self._backfill_pages = None
        self._prune()

    def _prune(self) -> None:
        horizon = self.horizon
        if horizon is None:
            return
        # A full pass (about 2 ms for 20,000 rows): simpler than keeping rows taken out of order (late rows,
        # backfills) sorted, and it runs once per poll.
        self._held = {key: row for key, row in self._held.items() if row.updated_at >= horizon}

    def _failed(self, exc: OESError) -> OESError:
        self.last_error = exc
        text = f"{type(exc).__name__}: {exc}"
        if text != self._logged_error:  # once per kind of failure in a row, not once per interval
            self._logged_error = text
            log.log(
                logging.WARNING if is_transient(exc) else logging.ERROR,
                "OES change feed %r/%r (%s): poll failed, will try again: %s",
                self.conn_id,
                self.enterprise_id,
                self.query.describe(),
                exc,
            )
        self._hand_all(FeedBatch(error=exc, final=True))
        return exc


def _newest_first(row: FeedRow) -> float:
    return -row.updated_at


def _row(record: Any) -> FeedRow | None:
    if not isinstance(record, dict):
        return None
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id:
        return None
    updated_at = parse_timestamp(record.get("updatedAt"))
    if updated_at is None:
        return None
    return FeedRow(record_id, updated_at, record)

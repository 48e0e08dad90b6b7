"""The change-feed engine (``triggers/_feed``) against an in-memory list endpoint (httpx MockTransport)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest

from airflow_provider_oes._api import ListQuery
from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers._feed import DEFAULT_QUERY, FeedBatch, FeedOrderError, is_unsupported, open_feed
from airflow_provider_oes.triggers._shared import connections
from tests.triggers._fake_feed_server import ENTERPRISE, T0, FakeOES, serve

CONN = "oes_feed"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeOES:
    return serve(monkeypatch, CONN, feed_page_size=10)


class Collector:
    """A callback subscriber that records batches and lets the test await the next complete poll."""

    def __init__(self) -> None:
        self.batches: list[FeedBatch] = []
        self.finals = 0
        self._event = asyncio.Event()

    def __call__(self, batch: FeedBatch) -> None:
        self.batches.append(batch)
        if batch.final:
            self.finals += 1
            self._event.set()

    @property
    def ids(self) -> list[str]:
        return [row.id for batch in self.batches for row in batch.rows]

    async def poll(self, feed: _feed.ChangeFeed, timeout: float = 5) -> FeedBatch:
        """Make the feed poll now; return the final batch of that poll."""
        before = self.finals
        self._event.clear()
        feed.wake()
        while self.finals == before:
            await asyncio.wait_for(self._event.wait(), timeout)
            self._event.clear()
        return next(b for b in reversed(self.batches) if b.final)


async def _feed_and_sub(**kw: Any) -> tuple[_feed.ChangeFeed, Any, Collector]:
    feed = await open_feed(CONN, ENTERPRISE, kw.pop("query", None))
    collector = Collector()
    sub = feed.subscribe(collector, interval=kw.pop("interval", 3600.0), **kw)
    while collector.finals == 0:  # the first poll starts with the first subscription
        await asyncio.sleep(0.005)
    return feed, sub, collector


def _add_final(server: FakeOES, count: int, start: float, step: float = 0.01, status: str = "cleared") -> list[str]:
    return [server.add(status, updated_at=start + k * step) for k in range(count)]


# ----------------------------------------------------------------------------- queries


def test_feed_keys_are_canonical_queries() -> None:
    """Equal filters in any order are one feed key; the default key reads both final statuses."""
    assert ListQuery(statuses=("released", "cleared", "cleared")).canonical() == DEFAULT_QUERY.canonical()
    assert ListQuery(types=("deallocation", "allocation")).canonical().types == ("allocation", "deallocation")
    assert DEFAULT_QUERY.filter_params() == {"statuses": "cleared,released"}


# ----------------------------------------------------------------------------- steady state


async def test_steady_state_is_one_request_with_the_feed_query(server: FakeOES) -> None:
    _add_final(server, 3, T0 - 5)
    server.add("reserved")
    feed, sub, got = await _feed_and_sub()
    try:
        (query,) = server.requests
        assert query == {
            "pageNumber": "0",
            "pageSize": "10",
            "statuses": "cleared,released",
            "sortField": "updatedAt",
            "sortDirection": "DESC",
        }
        assert len(got.ids) == 3
        for _ in range(3):
            server.now += 5
            await got.poll(feed)
        assert len(server.requests) == 4  # one page per poll: nothing changed
        assert len(got.ids) == 3  # rows within the overlap are not handed out again
    finally:
        sub.close()


async def test_pages_until_rows_are_older_than_the_cutoff_and_no_further(server: FakeOES) -> None:
    _add_final(server, 50, T0 - 3000)  # old history: beyond the overlap
    feed, sub, got = await _feed_and_sub()
    try:
        server.now += 5
        new = _add_final(server, 25, server.now - 4)  # 25 changes since the last poll, pages of 10
        server.requests.clear()
        batch = await got.poll(feed)
        assert [q["pageNumber"] for q in server.requests] == ["0", "1", "2"]
        assert batch.final
        assert batch.pages == 3
        assert set(new) <= set(got.ids)
    finally:
        sub.close()


async def test_watermark_comes_from_the_servers_date_not_the_local_clock(server: FakeOES) -> None:
    server.now = T0 + 10_000_000  # months away from this machine's clock
    _add_final(server, 20, server.now - 3000)  # more than a page of history behind the window
    feed, sub, got = await _feed_and_sub()
    try:
        assert feed.watermark == pytest.approx(server.now, abs=1)
        assert feed.covered_from == pytest.approx(server.now - feed.overlap, abs=1)
        server.now += 5
        await got.poll(feed)
        assert feed.watermark == pytest.approx(server.now, abs=1)
        server.now -= 60  # a server clock stepping back never moves the watermark back
        await got.poll(feed)
        assert feed.watermark == pytest.approx(server.now + 60, abs=1)
    finally:
        sub.close()


async def test_without_a_date_header_the_newest_row_sets_the_watermark(server: FakeOES) -> None:
    server.send_date = False
    _add_final(server, 3, T0 - 20, step=1)
    feed, sub, _ = await _feed_and_sub()
    try:
        assert feed.watermark == pytest.approx(T0 - 18)
    finally:
        sub.close()


# ----------------------------------------------------------------------------- no change missed


async def test_late_commit_within_the_overlap_is_handed_out_and_counted(server: FakeOES) -> None:
    feed, sub, got = await _feed_and_sub()
    try:
        server.now += 5
        await got.poll(feed)
        # Committed now, but stamped 20 s ago (before the previous poll's Date): a late commit.
        late = server.add("released", updated_at=server.now - 20)
        server.now += 5
        await got.poll(feed)
        assert late in got.ids
        # 20 s before the previous poll's Date (T0 + 5): within the 30 s overlap, so it was caught.
        assert feed.late_rows == 1
        assert feed.max_lateness == pytest.approx(20, abs=1)
    finally:
        sub.close()


async def test_date_running_ahead_of_updated_at_within_the_overlap_misses_nothing(server: FakeOES) -> None:
    server.date_offset = 25.0  # the web server's clock runs 25 s ahead of the database's
    feed, sub, got = await _feed_and_sub()
    try:
        flipped = []
        for _ in range(5):
            server.now += 5
            flipped.append(server.add("cleared", updated_at=server.now - 4))
            await got.poll(feed)
        assert set(flipped) <= set(got.ids)
    finally:
        sub.close()


async def test_changes_while_paging_shift_rows_down_but_none_is_skipped_or_repeated(server: FakeOES) -> None:
    feed, sub, got = await _feed_and_sub()
    try:
        server.now += 5
        first = _add_final(server, 25, server.now - 4)
        inserted: list[str] = []

        def insert_on_later_pages(query: dict[str, str]) -> None:
            if query.get("pageNumber") != "0" and len(inserted) < 6:
                for _ in range(3):  # three new changes land on top while the client reads page 1 and 2
                    inserted.append(server.add("cleared", updated_at=server.now))

        server.before_page = insert_on_later_pages
        await got.poll(feed)
        server.before_page = None
        assert set(first) <= set(got.ids)
        assert len(got.ids) == len(set(got.ids))  # the rows read twice (shifted down) were handed out once
        server.now += 5
        await got.poll(feed)
        assert set(inserted) <= set(got.ids)
        assert len(got.ids) == len(set(got.ids))
    finally:
        sub.close()


async def test_a_page_not_sorted_newest_first_is_not_trusted(server: FakeOES) -> None:
    _add_final(server, 15, T0 - 8, step=0.5)
    server.sorts = False  # a server ignoring sortField answers oldest first
    feed = await open_feed(CONN, ENTERPRISE)
    got = Collector()
    sub = feed.subscribe(got, interval=3600)
    try:
        while got.finals == 0:
            await asyncio.sleep(0.005)
        error = got.batches[-1].error
        assert isinstance(error, FeedOrderError)
        assert is_unsupported(error)
        assert "updatedAt" in str(error)
        assert feed.watermark is None
        assert feed.covered_from is None
        assert not feed.vouches_for(T0 + 100)
    finally:
        sub.close()


@pytest.mark.parametrize(("status", "unsupported"), [(400, True), (404, True), (403, False)])
async def test_rejected_feed_query_is_reported_to_subscribers(server: FakeOES, status: int, unsupported: bool) -> None:
    server.answer = lambda query: httpx.Response(status, json={"error": "nope"})
    feed = await open_feed(CONN, ENTERPRISE)
    got = Collector()
    sub = feed.subscribe(got, interval=3600)
    try:
        while got.finals == 0:
            await asyncio.sleep(0.005)
        assert got.batches[-1].error is not None
        assert got.batches[-1].error.status_code == status
        assert is_unsupported(got.batches[-1].error) is unsupported
    finally:
        sub.close()


async def test_transient_error_keeps_the_window_and_the_next_poll_catches_up(server: FakeOES) -> None:
    feed, sub, got = await _feed_and_sub()
    try:
        watermark = feed.watermark
        server.now += 5
        changed = server.add("cleared", updated_at=server.now - 1)
        server.answer = lambda query: httpx.Response(503, json={"error": "busy"})
        batch = await got.poll(feed)
        assert batch.error is not None
        assert batch.error.transient
        assert feed.watermark == watermark
        server.answer = None
        server.now += 5
        await got.poll(feed)
        assert changed in got.ids
    finally:
        sub.close()


# ----------------------------------------------------------------------------- sharing


async def test_one_feed_per_key_sharing_the_connection_client_and_limiter(server: FakeOES) -> None:
    feed, sub, got = await _feed_and_sub()
    other = Collector()
    sub2 = (await open_feed(CONN, ENTERPRISE, ListQuery(statuses=("released", "cleared")))).subscribe(
        other, interval=3600
    )
    cleared_only = await open_feed(CONN, ENTERPRISE, ListQuery(statuses=("cleared",)))
    try:
        assert sub2.feed is feed
        assert cleared_only is not feed
        connection = connections.find(CONN)
        assert feed.connection is connection
        assert cleared_only.connection is connection
        assert feed.connection.client.gate is connection.limiter
        server.now += 5
        server.add("cleared", updated_at=server.now - 1)
        before = len(server.requests)
        await got.poll(feed)
        assert len(server.requests) == before + 1  # two subscribers, one request
        assert got.batches[-1].rows == other.batches[-1].rows
    finally:
        sub.close()
        sub2.close()
    await asyncio.sleep(0.05)
    assert _feed.get_feed(CONN, ENTERPRISE) is None
    assert connections.find(CONN) is None  # the last user closed the client
    assert feed.connection.client.is_closed


# ----------------------------------------------------------------------------- since, replay, backfill, vouching


async def test_since_replays_held_rows_and_backfills_beyond_them(server: FakeOES) -> None:
    old = _add_final(server, 30, T0 - 400, step=1)  # 400..371 s ago: behind the first poll's window
    recent = _add_final(server, 5, T0 - 10, step=1)
    feed, sub, got = await _feed_and_sub()
    try:
        assert set(got.ids) == set(recent)
        replayed = Collector()
        late_joiner = feed.subscribe(replayed, interval=3600, since=T0)  # within what the feed holds: a replay
        await asyncio.sleep(0.01)
        assert replayed.batches
        assert replayed.batches[0].replay
        assert set(replayed.ids) == set(recent)
        history = Collector()
        sub3 = feed.subscribe(history, interval=3600, since=T0 - 360)  # further back: it pages back for sub3
        assert sub3.looking_back
        await history.poll(feed)
        await asyncio.wait_for(sub3.lookback_done.wait(), 5)
        assert set(old[10:]) | set(recent) <= set(history.ids)  # updatedAt >= since - overlap = T0 - 390
        assert not set(old[:10]) & set(history.ids)
        assert len(history.ids) == len(set(history.ids))  # replayed and backfilled rows never overlap
        assert not set(old) & set(got.ids)  # the first subscriber's bound is its own window, and
        assert not set(old) & set(replayed.ids)  # the look-back was sub3's alone
        late_joiner.close()
        sub3.close()
    finally:
        sub.close()


async def test_backfill_budget_limits_pages_and_coverage(server: FakeOES) -> None:
    _add_final(server, 100, T0 - 1000, step=5)  # one change every 5 s for 500 s
    feed, sub, got = await _feed_and_sub()
    try:
        server.requests.clear()
        feed.request_backfill(T0 - 1000, max_pages=2)
        await got.poll(feed)
        assert len(server.requests) == 2 + 1  # the page that reaches the cutoff, plus two beyond it
        assert feed.covered_from is not None
        assert T0 - 1000 < feed.covered_from < T0 - feed.overlap
        assert not feed.vouches_for(T0 - 900)
        assert feed.vouches_for(feed.covered_from + feed.overlap)
    finally:
        sub.close()


async def test_vouching_and_lookup(server: FakeOES) -> None:
    _add_final(server, 20, T0 - 3000)  # more than a page of history: the first poll covers its window only
    cleared = server.add("cleared", updated_at=T0 - 2)
    feed, sub, _ = await _feed_and_sub()
    try:
        assert not feed.vouches_for(None)
        assert not feed.vouches_for(T0 - 1)  # before the first poll's Date: a change may lie behind the window
        assert feed.vouches_for(T0)
        row = feed.lookup(cleared.upper())
        assert row is not None
        assert row.status == "cleared"
        assert feed.lookup("00000000-0000-4000-8000-000000000000") is None
    finally:
        sub.close()


async def test_since_none_starts_at_the_current_window(server: FakeOES) -> None:
    _add_final(server, 3, T0 - 3000, step=1)
    feed = await open_feed(CONN, ENTERPRISE)
    everything, from_now = Collector(), Collector()
    sub_all = feed.subscribe(everything, interval=3600, since=_feed.ALL)
    sub_now = feed.subscribe(from_now, interval=3600)
    try:
        while from_now.finals == 0:
            await asyncio.sleep(0.005)
        assert len(everything.ids) == 3  # the old rows: true final states, for a subscriber that wants all
        assert from_now.ids == []
        server.now += 5
        fresh = server.add("cleared", updated_at=server.now - 1)
        await from_now.poll(feed)
        assert from_now.ids == [fresh]
    finally:
        sub_all.close()
        sub_now.close()


async def test_queue_mode_iterates_batches(server: FakeOES) -> None:
    server.add("cleared", updated_at=T0 - 1)
    feed = await open_feed(CONN, ENTERPRISE)
    sub = feed.subscribe(interval=3600, since=_feed.ALL)
    try:
        batch = await asyncio.wait_for(sub.__anext__(), 5)
        assert batch.final
        assert len(batch.rows) == 1
        assert batch.resume_from == pytest.approx(T0, abs=1)
    finally:
        sub.close()
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_whole_list_read_covers_all_history(server: FakeOES) -> None:
    _add_final(server, 4, T0 - 5000, step=1)
    feed, sub, _ = await _feed_and_sub()
    try:
        assert feed.covered_from == -math.inf  # a short page: the list ended
    finally:
        sub.close()


async def test_rows_older_than_the_retention_are_not_handed_out_again(server: FakeOES) -> None:
    _add_final(server, 3, T0 - 5000, step=1)
    feed, sub, got = await _feed_and_sub(since=_feed.ALL)
    try:
        assert len(got.ids) == 3
        for _ in range(3):
            server.now += 5
            await got.poll(feed)
        assert len(got.ids) == 3  # the short list shows them on every poll; handed out once
    finally:
        sub.close()

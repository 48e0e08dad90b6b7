"""The change feed's vocabulary: rows, batches, the feed's defaults and when the API does not serve it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from airflow_provider_oes._api import LIST_UNUSABLE_STATUS_CODES, ListQuery
from airflow_provider_oes._time import parse_timestamp
from airflow_provider_oes.exceptions import OESError, OESResponseError
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS
from airflow_provider_oes.models import FINAL_STATUS_VALUES

DEFAULT_QUERY = ListQuery(statuses=FINAL_STATUS_VALUES)
"""The final statuses of every allocation: what the shared poller's feed reads."""
DEFAULT_OVERLAP: float = EXTRA_FIELDS["feed_overlap"].default
"""Seconds each poll reaches back behind the watermark, for clock skew and commit lag together."""
DEFAULT_PAGE_SIZE: int = EXTRA_FIELDS["feed_page_size"].default
"""Rows per feed page."""
DEFAULT_RETENTION = 900.0
"""Seconds behind the watermark for which rows are held (deduplication, replay, vouching for new triggers)."""
MAX_ERROR_BACKOFF = 300.0
"""Longest pause between polls while the feed keeps failing permanently (401/403/unsupported)."""
ALL = -math.inf
"""``subscribe(since=ALL)``: no lower bound and no backfill: every row the feed reads that is new to it."""
SORT_FIELD = "updatedAt"
SORT_DIRECTION = "DESC"


class FeedOrderError(OESResponseError):
    """The list endpoint did not sort by ``updatedAt`` newest first, so the feed cannot trust its cutoff."""


def is_unsupported(exc: BaseException | None) -> bool:
    """True when the server rejected the feed's query (the list endpoint is unusable) or ignores its sort order.

    :param exc: The error of a :class:`FeedBatch`, if any.
    """
    if isinstance(exc, FeedOrderError):
        return True
    return isinstance(exc, OESError) and exc.status_code in LIST_UNUSABLE_STATUS_CODES


class FeedRow:
    """One row of the feed.

    A feed holds up to ``retention`` seconds of rows (20,000 at 20 changes per second): it keeps each record as
    compact JSON text, much smaller than the parsed dict, and parses it again only when asked.

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


def newest_first(row: FeedRow) -> float:
    """Sort key: the newest row first."""
    return -row.updated_at


def row_from_record(record: Any) -> FeedRow | None:
    """A feed row for a raw list record; ``None`` without a usable id or ``updatedAt``."""
    if not isinstance(record, dict):
        return None
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id:
        return None
    updated_at = parse_timestamp(record.get("updatedAt"))
    if updated_at is None:
        return None
    return FeedRow(record_id, updated_at, record)

"""The change feed: newly final allocations of an enterprise, read newest first (``docs/internals/change-feed.rst``)."""

from __future__ import annotations

from airflow_provider_oes.triggers._feed.feed import ChangeFeed, get_feed, open_feed, running_feeds
from airflow_provider_oes.triggers._feed.subscription import Subscription
from airflow_provider_oes.triggers._feed.types import (
    ALL,
    DEFAULT_QUERY,
    FeedBatch,
    FeedOrderError,
    FeedRow,
    is_unsupported,
)

__all__ = [
    "ALL",
    "DEFAULT_QUERY",
    "ChangeFeed",
    "FeedBatch",
    "FeedOrderError",
    "FeedRow",
    "Subscription",
    "get_feed",
    "is_unsupported",
    "open_feed",
    "running_feeds",
]

"""How a watcher subscribes to its enterprise's change feed: the feed query and the opening."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_oes._api import validate_enterprise_id
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.models import FINAL_STATUS_VALUES
from airflow_provider_oes.triggers._feed import open_feed
from airflow_provider_oes.triggers._shared import connections

if TYPE_CHECKING:
    from airflow_provider_oes._api import ListQuery
    from airflow_provider_oes.triggers._feed import Subscription


class WatchedTrigger(Protocol):
    """What the watcher reads of its trigger's configuration."""

    @property
    def oes_conn_id(self) -> str: ...
    @property
    def enterprise_id(self) -> str | None: ...
    @property
    def statuses(self) -> tuple[str, ...] | None: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def start_time(self) -> str | None: ...
    @property
    def acknowledged_by(self) -> tuple[str, ...] | None: ...
    @property
    def redeliver_after(self) -> float: ...
    @property
    def max_redeliveries(self) -> int: ...
    @property
    def query(self) -> Any:
        """The filters (a ``ListQuery`` for allocations; the most per event is read by name, see ``resource``)."""


class SubscribingWatcher(Protocol):
    """What :func:`open_feed_subscription` reads of a watcher."""

    @property
    def trigger(self) -> WatchedTrigger: ...

    def since(self, overlap: float) -> float | None: ...


def feed_query(query: ListQuery) -> ListQuery:
    """The change-feed query a watcher reads: its filters, but both final statuses (see the class docstring).

    :param query: The watcher's filters.
    """
    return replace(query, statuses=FINAL_STATUS_VALUES)


async def open_feed_subscription(watcher: SubscribingWatcher) -> Subscription:
    """Subscribe to the loop's change feed for the watcher's connection, enterprise and query."""
    trigger = watcher.trigger
    enterprise_id = trigger.enterprise_id
    if enterprise_id is None:
        settings = (await connections.shared(trigger.oes_conn_id)).settings
        if settings.enterprise_id is None:
            raise OESInvalidRequestError(
                f"no enterprise id: pass enterprise_id to AllocationEventTrigger or set the 'enterprise_id' extra "
                f"of connection {trigger.oes_conn_id!r}"
            )
        enterprise_id = validate_enterprise_id(settings.enterprise_id)
    feed = await open_feed(trigger.oes_conn_id, enterprise_id, feed_query(trigger.query))
    return feed.subscribe(interval=trigger.poll_interval, since=watcher.since(float(feed.overlap)))

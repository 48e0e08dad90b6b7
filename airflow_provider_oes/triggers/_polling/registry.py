"""The per-loop registry of the shared pollers, one table per resource; :func:`register` adds a waiting trigger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.triggers._polling.poller import Poller
from airflow_provider_oes.triggers._shared.loop_local import LoopLocal

if TYPE_CHECKING:
    from airflow_provider_oes.triggers._polling.resource import Resource
    from airflow_provider_oes.triggers._shared.waiters import Waiter

DEFAULT_RESOURCE = "allocation"
"""The resource :func:`running_pollers` and :func:`get_poller` look at when not told."""


@dataclass
class PollerRegistry:
    """The pollers of one resource in one event loop, by ``(conn_id, enterprise_id)``."""

    pollers: dict[tuple[str, str], Poller[Any]] = field(default_factory=dict)


_registries: LoopLocal[dict[str, PollerRegistry]] = LoopLocal(dict)


def _registry(resource: str) -> PollerRegistry:
    registries = _registries.get()
    registry = registries.get(resource)
    if registry is None:
        registry = registries[resource] = PollerRegistry()
    return registry


def running_pollers(resource: str = DEFAULT_RESOURCE) -> dict[tuple[str, str], Poller[Any]]:
    """The pollers of a resource (by its ``name``) in this event loop by ``(conn_id, enterprise_id)`` (tests, logs)."""
    return _registry(resource).pollers


def get_poller(conn_id: str, enterprise_id: str, resource: str = DEFAULT_RESOURCE) -> Poller[Any] | None:
    """The running poller of this event loop for a resource, connection and enterprise, if any (tests, logs)."""
    return _registry(resource).pollers.get((conn_id, enterprise_id))


async def register(
    conn_id: str,
    enterprise_id: str,
    record_id: str,
    poll_interval: float,
    last_check: float | None = None,
    *,
    resource: Resource[Any],
    fail_fast: bool = False,
) -> Waiter:
    """Add one waiting record to the shared poller of its resource, connection and enterprise (starting it if needed).

    Never suspends: the poller's task reads the connection once for every trigger that registered meanwhile.
    When the connection cannot be read, every waiting trigger gets that error as its event.

    :param conn_id: Airflow connection id of type ``oes``.
    :param enterprise_id: Validated enterprise id.
    :param record_id: Validated id of the record waited for.
    :param poll_interval: Seconds between checks wanted by this trigger (the poller uses the smallest).
    :param last_check: Server time (epoch s) at which the record was last seen not final, if known (the feed's).
    :param resource: What kind of record it is.
    :param fail_fast: End the wait on a failure that is not final too (``Resource.is_failing``).
    """
    registry = _registry(resource.name)
    key = (conn_id, enterprise_id)
    poller = registry.pollers.get(key)
    if poller is None:
        poller = registry.pollers[key] = Poller(registry, key, resource)
    return poller.add(record_id, poll_interval, last_check, fail_fast=fail_fast)

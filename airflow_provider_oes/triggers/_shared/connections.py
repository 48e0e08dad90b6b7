"""The shared connection of an Airflow connection id in one event loop: one HTTP client, one rate limiter.

Pollers and change feeds :func:`acquire` it and :func:`release` it; the last user closes the client.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_oes._rate_limit import RateLimiter
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.hooks.async_client import OESAsyncClient
from airflow_provider_oes.triggers._shared.loop_local import LoopLocal

if TYPE_CHECKING:
    from airflow_provider_oes._settings import OESConnectionSettings

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 200
"""Ids per list request are capped here: 200 UUIDs keep the request line under 8 kB, a common proxy limit."""
CONCURRENCY = 8
"""Requests one connection has in flight at once (the rate limiter still decides how many per window)."""


@dataclass
class SharedConnection:
    """What all pollers and feeds of one Airflow connection share in one event loop."""

    settings: OESConnectionSettings
    client: OESAsyncClient
    limiter: RateLimiter
    users: int = 0
    """Pollers and feeds holding it (see :func:`release`)."""

    def retain(self) -> None:
        """One more user: the client stays open until it calls :func:`release`."""
        self.users += 1

    @property
    def batch_size(self) -> int:
        """Ids per list request: the connection's ``batch_size``, at most :data:`MAX_BATCH_SIZE`."""
        return min(self.settings.batch_size, MAX_BATCH_SIZE)


@dataclass
class _Registry:
    connections: dict[str, SharedConnection] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


_registry: LoopLocal[_Registry] = LoopLocal(_Registry)


def find(conn_id: str) -> SharedConnection | None:
    """The loop's shared connection for ``conn_id`` if it is open (for tests and logs)."""
    return _registry.get().connections.get(conn_id)


def active_clients() -> dict[str, OESAsyncClient]:
    """The open HTTP clients of this event loop, by connection id (for tests)."""
    return {conn_id: conn.client for conn_id, conn in _registry.get().connections.items()}


async def load_settings(conn_id: str) -> OESConnectionSettings:
    """Read the connection with the async lookup (the sync one can deadlock the triggerer's loop)."""
    from airflow.sdk import BaseHook

    from airflow_provider_oes._settings import OESConnectionSettings

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except Exception as exc:
        raise OESInvalidRequestError(
            f"could not read the Airflow connection {conn_id!r}: {type(exc).__name__}: {exc}"
        ) from None
    return OESConnectionSettings.from_connection(conn)


async def shared(conn_id: str) -> SharedConnection:
    """The loop's shared connection for ``conn_id``, created on first use (one lookup, one client); not acquired.

    :raises OESError: when the connection cannot be read.
    """
    registry = _registry.get()
    existing = registry.connections.get(conn_id)
    if existing is not None:
        return existing
    lock = registry.locks.setdefault(conn_id, asyncio.Lock())
    async with lock:
        existing = registry.connections.get(conn_id)
        if existing is not None:
            return existing
        settings = await load_settings(conn_id)
        limiter = RateLimiter(settings.rate_limit_requests, settings.rate_limit_period)
        client = OESAsyncClient(settings, gate=limiter, max_connections=CONCURRENCY)
        connection = registry.connections[conn_id] = SharedConnection(settings, client, limiter)
        if settings.strategy != "single" and settings.batch_size > MAX_BATCH_SIZE:
            log.warning(
                "Connection %r asks for batches of %d allocation ids; using %d per request so the request "
                "line stays under 8 kB.",
                conn_id,
                settings.batch_size,
                MAX_BATCH_SIZE,
            )
        return connection


async def acquire(conn_id: str) -> SharedConnection:
    """:func:`shared`, counted as one more user (give it back with :func:`release`)."""
    connection = await shared(conn_id)
    connection.retain()
    return connection


async def release(conn_id: str, connection: SharedConnection) -> None:
    """One user (a poller or a change feed) is done; the last one closes the HTTP client."""
    connection.users -= 1
    if connection.users == 0:
        registry = _registry.get()
        if registry.connections.get(conn_id) is connection:
            del registry.connections[conn_id]
        await connection.client.aclose()

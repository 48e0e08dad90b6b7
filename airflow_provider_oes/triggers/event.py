"""Event-driven settlement: start DAG runs when allocations of an enterprise become final.

:class:`AllocationEventTrigger` is a :class:`~airflow.triggers.base.BaseEventTrigger` for an
:class:`~airflow.sdk.AssetWatcher`; it reads the enterprise's change feed, shared with the deferred sensors of
the same connection in a triggerer. Each poll that finds allocations which became final gives one event
carrying them (capped). Guarantee: at-least-once delivery, exactly-once acting through
``new_allocations(acknowledge=True)`` with ``acknowledged_by`` set; the cases it does not cover are listed in
``docs/event_driven.rst``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_oes._constants import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Hashable, Iterable, Sequence

    from airflow_provider_oes._api import ListQuery
    from airflow_provider_oes.triggers._watching.stream import EventStreamProducer
    from airflow_provider_oes.triggers._watching.window import StateStore

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_REDELIVER_AFTER = 600.0
DEFAULT_MAX_REDELIVERIES = 6
_SHARED_STREAM_NAME = "airflow_provider_oes.allocation_events"


def _require_airflow_33() -> None:
    """Raise a clear error on Airflow < 3.3 (no asset state store, no shared-stream acknowledgements)."""
    if not hasattr(BaseEventTrigger, "create_shared_stream_producer"):
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        try:
            from airflow import __version__ as version
        except ImportError:  # pragma: no cover
            version = "unknown"
        raise OESInvalidRequestError(
            f"AllocationEventTrigger needs Airflow 3.3 or later (found {version}): it keeps its exactly-once state "
            "in the watched asset's state store and writes it only after Airflow confirms it stored each event "
            "(shared-stream acknowledgements); Airflow 3.2 has neither. Use AllocationStatusSensor on 3.2."
        )


def _positive_int(value: Any, name: str) -> int | None:
    """``None`` stays ``None``; anything but a positive integer is refused, naming it."""
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OESInvalidRequestError(f"{name} must be a positive integer, got {value!r}")
    return value


def _listed(values: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """A filter as the values it names (one string is one value); ``None`` stays ``None`` (no filter)."""
    if values is None:
        return None
    return (values,) if isinstance(values, str) else tuple(values)


class AllocationEventTrigger(BaseEventTrigger):
    """Emit an event whenever allocations of an enterprise become final (``cleared`` by default).

    Each event's payload (stored by Airflow in the asset event's ``extra["payload"]``)::

        {"enterprise_id": "...", "oes_conn_id": "...", "statuses": ["cleared"],
         "polled_at": "<server time of the poll>", "allocations": [<each allocation in the API's JSON shape>]}

    Read it downstream with :func:`~airflow_provider_oes.assets.allocations_from_asset_event`.

    The filters are the list endpoint's own (``statuses``, ``types``, ``currencies``, ``connectionIds``).
    ``types``, ``currencies`` and ``connection_ids`` are sent as the feed's query, so the API returns only
    those rows. ``statuses`` is applied to the feed's rows instead: the feed always reads both final statuses,
    so that the ``cleared`` and ``released`` watchers of an enterprise, and its deferred sensors, read **one**
    feed (one request per interval) rather than one each.

    :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id`` extra
        (read in the triggerer).
    :param oes_conn_id: Airflow connection id of type ``oes``.
    :param statuses: Final statuses to emit: ``cleared`` (default) and/or ``released``.
    :param types: Only ``allocation`` or ``deallocation`` records; ``None``: both.
    :param currencies: Only these currencies (e.g. ``["ofctbtc"]``); ``None``: all.
    :param connection_ids: Only allocations to these OES connections (``connectionId``); ``None``: all.
    :param poll_interval: Seconds between polls of the feed, and the least time between two events of this
        watcher.
    :param start_time: On the very first start, emit allocations that became final from this time on (ISO 8601,
        server time) instead of from "now" (the server's ``Date`` of the first poll, in whole seconds): replays
        history. Ignored once the watcher has state; changing it makes a new watcher with its own, fresh state.
    :param max_allocations_per_event: Most allocations in one event (default 500, and never more than
        ``[core] max_map_length``): a larger backlog goes out one event per poll interval.
    :param acknowledged_by: The ids of the DAGs that consume the asset with
        ``new_allocations(..., acknowledge=True)``: emit again what none of their runs acknowledged.
        ``None``: no re-emission (``docs/event-driven-acknowledgements.rst``).
    :param redeliver_after: Seconds after an emission before an unacknowledged allocation is emitted again.
    :param max_redeliveries: Re-emissions of one allocation before the watcher logs an error and stops.
    """

    def __init__(
        self,
        *,
        enterprise_id: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        statuses: Sequence[str] | str = ("cleared",),
        types: Sequence[str] | str | None = None,
        currencies: Sequence[str] | str | None = None,
        connection_ids: Sequence[str] | str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        start_time: str | None = None,
        max_allocations_per_event: int | None = None,
        acknowledged_by: Sequence[str] | str | None = None,
        redeliver_after: float = DEFAULT_REDELIVER_AFTER,
        max_redeliveries: int = DEFAULT_MAX_REDELIVERIES,
    ) -> None:
        from airflow_provider_oes._api import ListQuery, validate_enterprise_id
        from airflow_provider_oes._time import format_time, parse_time
        from airflow_provider_oes.exceptions import OESInvalidRequestError
        from airflow_provider_oes.models import FINAL_STATUS_VALUES

        super().__init__()
        _require_airflow_33()
        self.enterprise_id = None if enterprise_id is None else validate_enterprise_id(enterprise_id)
        if not isinstance(oes_conn_id, str) or not oes_conn_id:
            raise OESInvalidRequestError(f"oes_conn_id must be a connection id, got {oes_conn_id!r}")
        self.oes_conn_id = oes_conn_id
        if statuses is None:
            raise OESInvalidRequestError("statuses must name cleared and/or released")
        query = ListQuery(
            statuses=_listed(statuses),
            types=_listed(types),
            currencies=_listed(currencies),
            connection_ids=_listed(connection_ids),
        ).canonical()
        for status in query.statuses or ():
            if status not in FINAL_STATUS_VALUES:
                raise OESInvalidRequestError(
                    f"statuses may only contain {', '.join(FINAL_STATUS_VALUES)}; got {status!r}"
                )
        self._query = query
        self.statuses = query.statuses
        self.types = query.types
        self.currencies = query.currencies
        self.connection_ids = query.connection_ids
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or not math.isfinite(poll_interval)
            or poll_interval <= 0
        ):
            raise OESInvalidRequestError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        # Kept as given (normalised to UTC ISO) so that the kwargs, and with them the trigger's identity, are stable.
        self.start_time = None if start_time is None else format_time(parse_time(start_time, "start_time"))
        self.max_allocations_per_event = _positive_int(max_allocations_per_event, "max_allocations_per_event")
        consumers = _listed(acknowledged_by)
        if consumers is not None and (not consumers or not all(isinstance(c, str) and c for c in consumers)):
            raise OESInvalidRequestError(f"acknowledged_by must name consuming DAG ids, got {acknowledged_by!r}")
        self.acknowledged_by = None if consumers is None else tuple(sorted(set(consumers)))
        if (
            isinstance(redeliver_after, bool)
            or not isinstance(redeliver_after, (int, float))
            or not math.isfinite(redeliver_after)
            or redeliver_after <= 0
        ):
            raise OESInvalidRequestError(
                f"redeliver_after must be a positive number of seconds, got {redeliver_after!r}"
            )
        self.redeliver_after = float(redeliver_after)
        self.max_redeliveries: int = _positive_int(max_redeliveries, "max_redeliveries") or DEFAULT_MAX_REDELIVERIES

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.serialize()[1].items())})"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-data kwargs (Airflow identifies a watcher trigger by their hash)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "enterprise_id": self.enterprise_id,
                "oes_conn_id": self.oes_conn_id,
                "statuses": list(self.statuses or ()),
                "types": None if self.types is None else list(self.types),
                "currencies": None if self.currencies is None else list(self.currencies),
                "connection_ids": None if self.connection_ids is None else list(self.connection_ids),
                "poll_interval": self.poll_interval,
                "start_time": self.start_time,
                # Only when set: the kwargs of existing watchers, and so their trigger rows, stay as they were.
                **self._options(),
            },
        )

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.max_allocations_per_event is not None:
            options["max_allocations_per_event"] = self.max_allocations_per_event
        if self.acknowledged_by is not None:
            options["acknowledged_by"] = list(self.acknowledged_by)
        if self.redeliver_after != DEFAULT_REDELIVER_AFTER:
            options["redeliver_after"] = self.redeliver_after
        if self.max_redeliveries != DEFAULT_MAX_REDELIVERIES:
            options["max_redeliveries"] = self.max_redeliveries
        return options

    @property
    def query(self) -> ListQuery:
        """The filters (the list endpoint's query)."""
        return self._query

    @property
    def fingerprint(self) -> str:
        """What identifies this watcher's stream in a triggerer: connection, enterprise, filters, start time."""
        identity = {
            "conn": self.oes_conn_id,
            "enterprise": self.enterprise_id,
            "query": self.query.filter_params(),
            "start": self.start_time,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def state_key(self) -> str:
        """The key of this watcher's snapshot in the asset state store: connection, enterprise, statuses and
        start time. Not the other filters nor the poll interval: editing them continues from the stored floor.
        """
        identity = {
            "conn": self.oes_conn_id,
            "enterprise": self.enterprise_id,
            "statuses": list(self.statuses or ()),
            "start": self.start_time,
        }
        return f"oes_allocation_events/{hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]}"

    @property
    def legacy_state_key(self) -> str:
        """The key versions up to 0.2.0 used (every filter in it): read once, moved, deleted."""
        return f"oes_allocation_events_{self.fingerprint}"

    def _state_store(self) -> StateStore | None:
        accessors = getattr(self, "asset_state_store", None)
        if accessors is None:
            log.warning(
                "%r has no asset state store (it is not watching an asset in a triggerer): it cannot remember "
                "what it emitted across restarts.",
                self,
            )
            return None
        from airflow_provider_oes.triggers._watching.window import StateStore

        return StateStore(accessors, self.state_key, self.legacy_state_key)

    # ------------------------------------------------------------------ Airflow 3.3 shared stream (ack mode)

    def shared_stream_key(self) -> Hashable | None:
        """One shared stream per watcher identity: its producer commits the state only after Airflow stored events."""
        return (_SHARED_STREAM_NAME, self.fingerprint, self.poll_interval, json.dumps(self._options(), sort_keys=True))

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> EventStreamProducer:
        """The producer of this watcher's stream (ack mode: ``docs/internals/event-trigger.rst``)."""
        from airflow_provider_oes.triggers._watching.stream import EventStreamProducer

        trigger = cls(**kwargs)
        return EventStreamProducer(trigger, trigger.handoff_key)

    @property
    def handoff_key(self) -> str:
        """Where this watcher's subscriber hands the state store to its stream's producer."""
        return f"{self.fingerprint}/{self.poll_interval}/{json.dumps(self._options(), sort_keys=True)}"

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Turn the stream's items into trigger events (items without allocations keep the stream moving)."""
        from airflow_provider_oes.triggers._watching.stream import hand_over_store

        hand_over_store(self.handoff_key, self._state_store())
        async for item in shared_stream:
            payload = item.get("event") if isinstance(item, dict) else None
            if payload:
                yield TriggerEvent(payload)

    # ------------------------------------------------------------------ plain run()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Watch forever without Airflow's storage confirmation (weaker: ``docs/internals/event-trigger.rst``).

        The triggerer of Airflow 3.3 uses the shared stream instead; this runs when a triggerer cannot.
        """
        from airflow_provider_oes.triggers._watching.watcher import Watcher

        watcher = Watcher(self, self._state_store(), markers=False)
        async for item, commit in watcher.items():
            payload = item.get("event")
            if payload:
                yield TriggerEvent(payload)
            if commit is not None:
                await watcher.commit(commit)

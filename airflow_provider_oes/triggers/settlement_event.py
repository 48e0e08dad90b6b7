"""Event-driven settlement review: start DAG runs when settlements of an enterprise arrive or become final.

:class:`SettlementEventTrigger` is a :class:`~airflow.triggers.base.BaseEventTrigger` for an
:class:`~airflow.sdk.AssetWatcher`, on the allocation watcher's watch loop (state, capped events, acknowledged
delivery) with its own change source (``docs/internals/settlement-events.rst``).
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
    from collections.abc import AsyncIterator, Hashable, Sequence

    from airflow_provider_oes.triggers._settlement_watch.records import SettlementQuery
    from airflow_provider_oes.triggers._watching.resource import WatchedResource
    from airflow_provider_oes.triggers._watching.stream import EventStreamProducer
    from airflow_provider_oes.triggers._watching.window import StateStore

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_REDELIVER_AFTER = 600.0
DEFAULT_MAX_REDELIVERIES = 6
WATCHED_STATUSES = ("pending", "failed", "completed", "rejected")
"""``pending``: a new settlement to review within its dispute window; ``completed``/``rejected``: final;
``failed``: not final (BitGo retries it), each failure one delivery."""
_SHARED_STREAM_NAME = "airflow_provider_oes.settlement_events"


def _invalid(message: str) -> Exception:
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    return OESInvalidRequestError(message)


def _values(value: Any, name: str) -> tuple[str, ...]:
    """A filter as the strings it names (one string is one value), refused with the bad value when not that."""
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values:
        raise _invalid(f"{name} must name one or more values, got {value!r}")
    if not all(isinstance(v, str) and v for v in values):
        raise _invalid(f"{name} must hold non-empty strings, got {value!r}")
    return tuple(sorted(set(values)))


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _invalid(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"{name} must be a positive integer, got {value!r}")
    return value


def _resource() -> WatchedResource:
    from airflow_provider_oes.triggers._settlement_watch.records import settlement_resource
    from airflow_provider_oes.triggers._settlement_watch.source import open_settlement_subscription

    return settlement_resource(open_settlement_subscription)


class SettlementEventTrigger(BaseEventTrigger):
    """Emit an event when settlements of an enterprise reach the watched statuses (new ``pending`` ones by default).

    Each event's payload (the asset event's ``extra["payload"]``)::

        {"enterprise_id": "...", "oes_conn_id": "...", "statuses": ["pending"], "polled_at": "<server time>",
         "settlements": [<each settlement in the API's JSON shape, plus "disputeWindowEndsAt">]}

    ``disputeWindowEndsAt`` is the end of the client's dispute window (``createdAt`` plus the partner's
    ``clientDisputeWindowMinutes``, ISO 8601 UTC) for a pending settlement of a partner with disputes, else
    ``null``. Read events downstream with ``assets.new_settlements``. Each (id, status, ``updatedAt``) is one
    delivery: a settlement that fails twice is emitted twice with ``failed``. Guarantee, restarts, pauses and
    acknowledgements as for :class:`~airflow_provider_oes.triggers.event.AllocationEventTrigger`.

    :param enterprise_id: The client's enterprise id.
    :param oes_conn_id: Airflow connection id of type ``oes``.
    :param statuses: Statuses to emit: ``pending`` (default), ``completed``, ``rejected``, ``failed``.
    :param partner_ids: Only settlements of these partners (UUIDs); ``None``: all.
    :param poll_interval: Seconds between polls, and the least time between two events of this watcher.
    :param acknowledged_by: The DAG ids that acknowledge what they act on: emit again what none acknowledged.
    :param redeliver_after: Seconds after an emission before an unacknowledged settlement is emitted again.
    :param max_redeliveries: Re-emissions of one delivery before the watcher logs an error and stops.
    :param max_settlements_per_event: Most settlements in one event (default 500, never above
        ``[core] max_map_length``): a larger backlog goes out one event per poll interval, oldest first.
    """

    def __init__(
        self,
        *,
        enterprise_id: str,
        oes_conn_id: str = DEFAULT_CONN_ID,
        statuses: Sequence[str] | str = ("pending",),
        partner_ids: Sequence[str] | str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        acknowledged_by: Sequence[str] | str | None = None,
        redeliver_after: float = DEFAULT_REDELIVER_AFTER,
        max_redeliveries: int = DEFAULT_MAX_REDELIVERIES,
        max_settlements_per_event: int | None = None,
    ) -> None:
        from airflow_provider_oes._api import validate_enterprise_id
        from airflow_provider_oes._api.paths import UUID
        from airflow_provider_oes.triggers._settlement_watch.records import SettlementQuery

        super().__init__()
        if not hasattr(BaseEventTrigger, "create_shared_stream_producer"):
            from airflow import __version__ as version

            raise _invalid(
                f"SettlementEventTrigger needs Airflow 3.3 or later (found {version}): it keeps its state in the "
                "watched asset's state store and writes it only after Airflow confirms it stored each event."
            )
        self.enterprise_id: str = validate_enterprise_id(enterprise_id)
        if not isinstance(oes_conn_id, str) or not oes_conn_id:
            raise _invalid(f"oes_conn_id must be a connection id, got {oes_conn_id!r}")
        self.oes_conn_id = oes_conn_id
        self.statuses: tuple[str, ...] = _values(statuses, "statuses")
        for status in self.statuses:
            if status not in WATCHED_STATUSES:
                raise _invalid(f"statuses may only contain {', '.join(WATCHED_STATUSES)}; got {status!r}")
        partners = None if partner_ids is None else _values(partner_ids, "partner_ids")
        for partner_id in partners or ():
            if not UUID.fullmatch(partner_id):
                raise _invalid(f"partner_ids must hold partner UUIDs, got {partner_id!r}")
        self.partner_ids = None if partners is None else tuple(sorted({p.lower() for p in partners}))
        self.poll_interval = _seconds(poll_interval, "poll_interval")
        consumers = None if acknowledged_by is None else _values(acknowledged_by, "acknowledged_by")
        self.acknowledged_by = consumers
        self.redeliver_after = _seconds(redeliver_after, "redeliver_after")
        self.max_redeliveries: int = _count(max_redeliveries, "max_redeliveries") or DEFAULT_MAX_REDELIVERIES
        self.max_settlements_per_event = _count(max_settlements_per_event, "max_settlements_per_event")
        self.start_time: str | None = None  # the watch loop's replay option: not offered for settlements
        self._query = SettlementQuery(self.statuses, self.partner_ids)
        self.resource = _resource()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.serialize()[1].items())})"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-data kwargs (Airflow identifies a watcher trigger by their hash)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "enterprise_id": self.enterprise_id,
                "oes_conn_id": self.oes_conn_id,
                "statuses": list(self.statuses),
                "partner_ids": None if self.partner_ids is None else list(self.partner_ids),
                "poll_interval": self.poll_interval,
                "acknowledged_by": None if self.acknowledged_by is None else list(self.acknowledged_by),
                "redeliver_after": self.redeliver_after,
                "max_redeliveries": self.max_redeliveries,
                "max_settlements_per_event": self.max_settlements_per_event,
            },
        )

    @property
    def query(self) -> SettlementQuery:
        """The filters."""
        return self._query

    def _options(self) -> dict[str, Any]:
        return {k: v for k, v in self.serialize()[1].items() if k not in ("enterprise_id", "oes_conn_id")}

    @property
    def fingerprint(self) -> str:
        """What identifies this watcher's stream in a triggerer: connection, enterprise, filters."""
        identity = {"conn": self.oes_conn_id, "enterprise": self.enterprise_id, "query": self._options()}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def state_key(self) -> str:
        """The key of this watcher's snapshot in the asset state store: connection, enterprise and statuses.
        Not the partners nor the poll interval: editing them continues from the stored floor."""
        identity = {"conn": self.oes_conn_id, "enterprise": self.enterprise_id, "statuses": list(self.statuses)}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        return f"oes_settlement_events/{digest}"

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

        return StateStore(accessors, self.state_key)

    # ------------------------------------------------------------------ Airflow 3.3 shared stream (ack mode)

    def shared_stream_key(self) -> Hashable | None:
        """One shared stream per watcher identity: its producer commits the state only after Airflow stored events."""
        return (_SHARED_STREAM_NAME, self.fingerprint)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> EventStreamProducer:
        """The producer of this watcher's stream (ack mode: ``docs/internals/event-trigger.rst``)."""
        from airflow_provider_oes.triggers._watching.stream import EventStreamProducer

        trigger = cls(**kwargs)
        return EventStreamProducer(trigger, trigger.handoff_key)

    @property
    def handoff_key(self) -> str:
        """Where this watcher's subscriber hands the state store to its stream's producer."""
        return f"settlements/{self.fingerprint}"

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Turn the stream's items into trigger events (items without settlements keep the stream moving)."""
        from airflow_provider_oes.triggers._watching.stream import hand_over_store

        hand_over_store(self.handoff_key, self._state_store())
        async for item in shared_stream:
            payload = item.get("event") if isinstance(item, dict) else None
            if payload:
                yield TriggerEvent(payload)

    # ------------------------------------------------------------------ plain run()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Watch forever without Airflow's storage confirmation (the triggerer of Airflow 3.3 uses the shared
        stream instead; this runs when a triggerer cannot)."""
        from airflow_provider_oes.triggers._watching.watcher import Watcher

        watcher = Watcher(self, self._state_store(), markers=False)
        async for item, commit in watcher.items():
            payload = item.get("event")
            if payload:
                yield TriggerEvent(payload)
            if commit is not None:
                await watcher.commit(commit)

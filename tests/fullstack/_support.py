"""Constants and helpers of the full-stack tests (importable; tests never import a conftest module)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.harness.fullstack import FullStack

BATCH_SIZE = 8
"""Ids per list request on the test connection: small, so 20 sensors need several batches per sweep."""


def use_triggerers(stack: FullStack, count: int) -> list[str]:
    """Make exactly ``count`` triggerers run (start new ones one by one, stop extra ones gracefully).

    :param stack: The stack.
    :param count: Triggerers wanted.
    :return: Their component names, oldest first.
    """
    while len(stack.triggerer_names) > count:
        stack.stop_triggerer(stack.triggerer_names[0])
    while len(stack.triggerer_names) < count:
        stack.triggerer_job_id(stack.start_triggerer().name)  # one at a time, so each job id is known
    return stack.triggerer_names


# ---------------------------------------------------------------------- event-driven settlement (example 7)

SETTLE_DAG = "oes_event_driven_settlement"
ALERT_DAG = "oes_event_driven_release_alert"
CLEARED_ASSET = "oes_cleared_allocations"
RELEASED_ASSET = "oes_released_allocations"
EVENT_POLL_INTERVAL = 2.0
"""``OES_EVENT_POLL_INTERVAL`` of the example's watchers in the full-stack tests (seconds)."""


def _json(value: Any) -> Any:
    """A JSON column's value: parsed by the driver already, or JSON text, or (a plain string) itself."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def watcher_holders(stack: FullStack) -> dict[str, int | None]:
    """``{asset name: job id of the triggerer holding its watcher trigger (None: nobody)}``, from the metadata DB.

    :param stack: The stack.
    """
    rows = metadata_rows(
        stack,
        "SELECT a.name, t.triggerer_id FROM asset_watcher w JOIN trigger t ON t.id = w.trigger_id "
        "JOIN asset a ON a.id = w.asset_id",
    )
    return {str(name): (None if holder is None else int(holder)) for name, holder in rows}


def metadata_rows(stack: FullStack, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of a read-only SQL query on the stack's metadata DB (PostgreSQL or SQLite).

    :param stack: The stack.
    :param sql: The query (``:name`` parameters).
    :param params: Its parameters.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(stack.stack.database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


@dataclass
class EventLedger:
    """Asset events of the example's two assets and the DAG runs that consumed them, per allocation id.

    :param events: Allocation id -> ids of the asset events carrying it (an id twice in one event counts twice).
    :param runs: Allocation id -> ``(dag_id, run_id)`` of every DAG run whose triggering events carry it.
    :param asset_of: Allocation id -> names of the assets whose events carry it.
    :param unfinished: Runs of the two DAGs not yet ``success``/``failed``, and events no run consumed yet.
    :param failed: Runs of the two DAGs that failed.
    :param event_times: Asset event id -> when Airflow stored it (aware datetime).
    :param event_ids: Asset event id -> allocation ids it carries.
    """

    events: dict[str, list[int]] = field(default_factory=dict)
    runs: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    asset_of: dict[str, set[str]] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    event_times: dict[int, datetime] = field(default_factory=dict)
    event_ids: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, stack: FullStack) -> EventLedger:
        """Read it from the metadata DB (one consistent snapshot per query).

        :param stack: The stack.
        """
        ledger = cls()
        for event_id, asset, extra, stamp in metadata_rows(
            stack,
            "SELECT e.id, a.name, e.extra, e.timestamp FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name IN (:cleared, :released) ORDER BY e.id",
            cleared=CLEARED_ASSET,
            released=RELEASED_ASSET,
        ):
            extra = _json(extra) or {}
            payload = extra.get("payload") if extra.get("from_trigger") else None
            ids = [str(a["id"]) for a in (payload or {}).get("allocations") or []]
            ledger.event_ids[int(event_id)] = ids
            ledger.event_times[int(event_id)] = _aware(stamp)
            for allocation_id in ids:
                ledger.events.setdefault(allocation_id, []).append(int(event_id))
                ledger.asset_of.setdefault(allocation_id, set()).add(str(asset))
        consumed: set[int] = set()
        for event_id, dag_id, run_id, state in metadata_rows(
            stack,
            "SELECT dae.event_id, r.dag_id, r.run_id, r.state FROM dagrun_asset_event dae "
            "JOIN dag_run r ON r.id = dae.dag_run_id WHERE r.dag_id IN (:settle, :alert)",
            settle=SETTLE_DAG,
            alert=ALERT_DAG,
        ):
            consumed.add(int(event_id))
            run = (str(dag_id), str(run_id))
            for allocation_id in ledger.event_ids.get(int(event_id), []):
                ledger.runs.setdefault(allocation_id, set()).add(run)
            if state == "failed":
                ledger.failed.append(f"{dag_id}/{run_id}")
            elif state != "success":
                ledger.unfinished.append(f"{dag_id}/{run_id} ({state})")
        ledger.unfinished += [f"asset event {e} not consumed" for e in ledger.event_ids if e not in consumed]
        ledger.unfinished = sorted(set(ledger.unfinished))
        return ledger

    @staticmethod
    def acted_on(stack: FullStack) -> dict[str, list[tuple[str, str]]]:
        """``{allocation id: [(dag_id, run_id) of each run that settled or alerted on it]}``, from the XComs of the
        successful ``settle`` (mapped, one per batch of allocations) and ``alert`` task instances.

        :param stack: The stack.
        """
        rows = metadata_rows(
            stack,
            "SELECT x.dag_id, x.run_id, x.task_id, x.value FROM xcom x JOIN task_instance ti ON ti.dag_id = x.dag_id "
            "AND ti.run_id = x.run_id AND ti.task_id = x.task_id AND ti.map_index = x.map_index "
            "WHERE ti.state = 'success' AND ((x.dag_id = :settle AND x.task_id = 'settle' AND x.key = 'return_value') "
            "OR (x.dag_id = :alert AND x.task_id = 'alert' AND x.key = 'return_value'))",
            settle=SETTLE_DAG,
            alert=ALERT_DAG,
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for dag_id, run_id, _task_id, value in rows:
            value = _json(value)
            value = _json(value) if isinstance(value, str) and value[:1] in '[{"' else value
            ids = [str(item["id"]) for item in value or []]
            for allocation_id in ids:
                found.setdefault(allocation_id, []).append((str(dag_id), str(run_id)))
        return found


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------- the same, through the REST API


def api_time(ts: str) -> float:
    """Epoch seconds of a REST API timestamp (ISO 8601)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class Ledger:
    """What the stack did, read through the REST API."""

    def __init__(self, stack: FullStack) -> None:
        self.stack = stack

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        answer = self.stack.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=1000&order_by=run_after")
        return list(answer["dag_runs"])

    def triggering_allocations(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.stack.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")
        found = []
        for event in answer["asset_events"]:
            extra = event.get("extra") or {}
            payload = extra.get("payload") if extra.get("from_trigger") else None
            found += list((payload or {}).get("allocations") or [])
        return found

    def settlements(self, dag_id: str) -> tuple[Counter[str], dict[str, float], list[str]]:
        """Per allocation id: how many runs carried it; when its first run was queued; unfinished runs."""
        counts: Counter[str] = Counter()
        queued: dict[str, float] = {}
        unfinished = []
        for run in self.runs(dag_id):
            if run["state"] not in ("success", "failed"):
                unfinished.append(run["dag_run_id"])
            ids = {a["id"] for a in self.triggering_allocations(dag_id, run["dag_run_id"])}
            counts.update(ids)
            for allocation_id in ids:
                queued.setdefault(allocation_id, api_time(run["queued_at"]))
        return counts, queued, unfinished

    def settled_by_tasks(self) -> Counter[str]:
        """What the mapped ``settle`` task instances returned, over all runs (see :meth:`settled_and_repeats`)."""
        return self.settled_and_repeats()[0]

    def settled_and_repeats(self) -> tuple[Counter[str], int]:
        """What the mapped ``settle`` task instances returned over all settlement runs, and how many runs took
        only repeats. Every ``cleared_allocations`` must succeed and every ``settle`` too, except the unmapped
        ``settle`` of a run whose ``cleared_allocations`` returned nothing (a re-emission of what another run
        took on): Airflow skips a task mapped over an empty list."""
        counts: Counter[str] = Counter()
        repeats_only = 0
        for run in self.runs(SETTLE_DAG):
            run_id = run["dag_run_id"]
            states = self.stack.task_states(SETTLE_DAG, run_id)
            assert states["cleared_allocations"].state == "success", (run_id, states)
            if self.stack.xcom(SETTLE_DAG, run_id, "cleared_allocations") == []:
                repeats_only += 1
                assert {k: v.state for k, v in states.items() if v.task_id == "settle"} == {"settle": "skipped"}, states
                continue
            for ti in states.values():
                if ti.task_id == "settle":
                    assert ti.state == "success", (run_id, states)
                    counts.update(item["id"] for item in self.stack.xcom(SETTLE_DAG, run_id, "settle", ti.map_index))
            assert all(ti.state == "success" for ti in states.values()), (run_id, states)
        return counts, repeats_only


def tasks_have_asset_state_store() -> bool:
    """True on Airflow 3.3+, whose tasks can read and write the asset state store."""
    from airflow.sdk.execution_time import context

    return hasattr(context, "AssetStateStoreAccessors")


def acknowledgement_records(stack: FullStack) -> dict[tuple[str, str], tuple[str, float]]:
    """``{(consumer DAG id, allocation id): (run id, acknowledged at, epoch s)}`` of every acknowledgement in the
    metadata DB (one per pair: a second run acknowledging the same allocation fails the assertion).

    :param stack: The stack.
    """
    found: dict[tuple[str, str], tuple[str, float]] = {}
    for key, value in metadata_rows(stack, "SELECT key, value FROM asset_state_store WHERE key LIKE 'oes-ack/%'"):
        _prefix, dag_id, allocation_id, _status, _updated = str(key).split("/", 4)
        ack = json.loads(value)
        run_id = ack["run_id"]
        assert found.setdefault((dag_id, allocation_id), (run_id, api_time(ack["acked_at"])))[0] == run_id
    return found


def acknowledgements(stack: FullStack) -> dict[tuple[str, str], str]:
    """``{(consumer DAG id, allocation id): run id}`` of every acknowledgement in the metadata DB.

    :param stack: The stack.
    """
    return {pair: run_id for pair, (run_id, _at) in acknowledgement_records(stack).items()}

"""An in-memory OES list endpoint behind ``httpx.MockTransport``, with a server clock the test moves.

Enough of the list endpoint for change-feed unit tests: ``statuses``/``types``/``allocationIds`` filters,
``sortField=updatedAt`` with ``sortDirection``, paging, the final sort on ``createdAt`` then ``id``, a
``Date`` header from the server clock, and hooks to answer an error or change rows while the client pages.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx

from tests._factories import allocation_record

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

BASE_URL = "http://127.0.0.1:9"
ENTERPRISE = "ent1"
T0 = 1_800_000_000.0
"""Server time at the start of each test (2027-01-15): far from the test machine's clock on purpose."""


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Row:
    id: str
    status: str
    updated_at: float
    created_at: float
    type: str = "allocation"

    def record(self) -> dict[str, Any]:
        return allocation_record(
            id=self.id,
            status=self.status,
            updatedAt=iso(self.updated_at),
            createdAt=iso(self.created_at),
            type=self.type,
            reason=None if self.status == "cleared" else "r",
        )


@dataclass
class FakeOES:
    """The server: rows, a clock, and a log of list requests (their query dicts)."""

    now: float = T0
    rows: dict[str, Row] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    send_date: bool = True
    date_offset: float = 0.0
    """Seconds the ``Date`` header runs ahead of the clock that stamps ``updatedAt``."""
    sorts: bool = True
    """False: ignore ``sortField``/``sortDirection`` (a server the feed must not trust)."""
    answer: Callable[[dict[str, str]], httpx.Response | None] | None = None
    """Called first for every list request: return a response to answer with it instead."""
    before_page: Callable[[dict[str, str]], None] | None = None
    """Called before a page is computed (to change rows while the client pages)."""
    single_gets: list[str] = field(default_factory=list)

    def add(self, status: str = "reserved", *, updated_at: float | None = None, row_id: str | None = None) -> str:
        row_id = row_id or str(uuid.uuid4())
        stamp = self.now if updated_at is None else updated_at
        self.rows[row_id] = Row(row_id, status, stamp, stamp - 100)
        return row_id

    def flip(self, row_id: str, status: str, *, updated_at: float | None = None) -> None:
        row = self.rows[row_id]
        row.status = status
        row.updated_at = self.now if updated_at is None else updated_at

    def handle(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        headers = {"date": formatdate(self.now + self.date_offset, usegmt=True)} if self.send_date else {}
        path = request.url.path
        if not path.endswith("/clients/allocations"):
            allocation_id = path.rsplit("/", 1)[-1]
            self.single_gets.append(allocation_id)
            row = self.rows.get(allocation_id)
            if row is None:
                return httpx.Response(404, json={"error": "not found"}, headers=headers)
            return httpx.Response(200, content=json.dumps({"allocation": row.record()}).encode(), headers=headers)
        self.requests.append(query)
        if self.answer is not None:
            replaced = self.answer(query)
            if replaced is not None:
                return replaced
        if self.before_page is not None:
            self.before_page(query)
        rows = list(self.rows.values())
        if "statuses" in query:
            wanted = set(query["statuses"].split(","))
            rows = [r for r in rows if r.status in wanted]
        if "types" in query:
            types = set(query["types"].split(","))
            rows = [r for r in rows if r.type in types]
        if "allocationIds" in query:
            ids = set(query["allocationIds"].split(","))
            rows = [r for r in rows if r.id in ids]
        rows.sort(key=lambda r: (r.created_at, r.id))
        if self.sorts and query.get("sortField") == "updatedAt":
            rows.sort(key=lambda r: r.updated_at, reverse=query.get("sortDirection") == "DESC")
        size = int(query.get("pageSize", "100"))
        number = int(query.get("pageNumber", "0"))
        page = rows[number * size : (number + 1) * size]
        body = json.dumps({"allocations": [r.record() for r in page]}).encode()
        return httpx.Response(200, content=body, headers=headers)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def feed_requests(self) -> list[dict[str, str]]:
        return [q for q in self.requests if q.get("sortField") == "updatedAt"]

    def id_requests(self) -> list[dict[str, str]]:
        return [q for q in self.requests if "allocationIds" in q]


def connection_json(**extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "oes",
            "host": BASE_URL,
            "password": "tok",
            "extra": {"enterprise_id": ENTERPRISE, "max_retries": 0, "retry_max_wait": 0.01, **extra},
        }
    )


def serve(monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: Any) -> FakeOES:
    """A :class:`FakeOES` that every ``httpx.AsyncClient`` made from now on talks to (the pollers make their own),
    and the connection ``conn_id`` pointing at it with the extras ``extra``."""
    fake = FakeOES()
    real = httpx.AsyncClient

    class Mocked(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["transport"] = fake.transport()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", Mocked)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(**extra))
    return fake

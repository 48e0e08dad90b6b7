"""Unit tests of :class:`OESAsyncClient` against ``httpx.MockTransport`` (no network)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest

from airflow_provider_oes._api import MAX_RESPONSE_BYTES, USER_AGENT
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESRateLimitError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.hooks.async_client import OESAsyncClient
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

BASE = "https://oes.example.test"
TOKEN = "async-secret-token-0123456789"
PATH = f"/api/network/v1/enterprises/ent1/clients/allocations/{DEFAULT_ALLOCATION_ID}"
OTHER_ID = "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"


def _settings(**overrides: Any) -> OESConnectionSettings:
    values: dict[str, Any] = {"conn_id": "oes_async", "base_url": BASE, "token": TOKEN, "enterprise_id": "ent1"}
    values.update(overrides)
    return OESConnectionSettings(**values)


class _Gate:
    """A rate limiter double that records what the client asked of it."""

    def __init__(self) -> None:
        self.acquired = 0
        self.released: list[object] = []
        self.penalties: list[float] = []
        self.penalized_tickets: list[object] = []

    async def acquire(self) -> object:
        self.acquired += 1
        return ("ticket", self.acquired)

    def release(self, ticket: object) -> None:
        self.released.append(ticket)

    def penalize(self, seconds: float, ticket: object = None) -> None:
        self.penalties.append(seconds)
        self.penalized_tickets.append(ticket)


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


@pytest.fixture
async def make_client(seen: list[httpx.Request]) -> AsyncIterator[Callable[..., OESAsyncClient]]:
    """Return ``make(handler_or_responses, gate=None, **settings)``; every client is closed afterwards."""
    clients: list[OESAsyncClient] = []

    def make(answers: list[httpx.Response | Exception], gate: _Gate | None = None, **settings: Any) -> OESAsyncClient:
        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        client = OESAsyncClient(_settings(**settings), gate=gate, transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_get_allocation_sends_the_token_and_parses_the_answer(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request]
) -> None:
    client = make_client([httpx.Response(200, json=allocation_body(status="cleared"))])
    allocation = await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert allocation.is_cleared
    assert allocation.to_json_dict() == allocation_record(status="cleared")
    (request,) = seen
    assert request.url.path == PATH
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert client.requests_sent == 1


async def test_list_allocations_sends_the_query_and_returns_raw_records(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request]
) -> None:
    records = [allocation_record(), allocation_record(id=OTHER_ID), {"not": "an allocation"}]
    client = make_client([httpx.Response(200, json={"allocations": records})])
    got = await client.list_allocations(
        "ent1", allocation_ids=[DEFAULT_ALLOCATION_ID, OTHER_ID], statuses=["cleared", "released"], page_size=2
    )
    assert got == records  # unparsed: the caller validates each record on its own
    query = parse_qs(seen[0].url.query.decode())
    assert query == {
        "pageNumber": ["0"],
        "pageSize": ["2"],
        "allocationIds": [f"{DEFAULT_ALLOCATION_ID},{OTHER_ID}"],
        "statuses": ["cleared,released"],
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"page_number": -1}, "page_number"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"allocation_ids": ["nope"]}, "'nope'"),
    ],
)
async def test_bad_list_arguments_are_refused_before_any_request(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request], kwargs: dict[str, Any], needle: str
) -> None:
    client = make_client([httpx.Response(200, json={"allocations": []})])
    with pytest.raises(OESInvalidRequestError, match=needle):
        await client.list_allocations("ent1", **kwargs)
    assert seen == []


@pytest.mark.parametrize(
    ("status", "cls"), [(401, OESAuthenticationError), (404, OESNotFoundError), (400, OESInvalidRequestError)]
)
async def test_permanent_statuses_map_to_their_error_without_retry(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request], status: int, cls: type[Exception]
) -> None:
    client = make_client([httpx.Response(status, json={"error": "no", "requestId": "r-7"})], max_retries=3)
    with pytest.raises(cls, match="r-7"):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert len(seen) == 1


async def test_transient_status_is_retried_then_answered(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request]
) -> None:
    client = make_client(
        [httpx.Response(503), httpx.Response(200, json=allocation_body(status="released"))],
        max_retries=2,
        retry_max_wait=0.01,
    )
    allocation = await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert allocation.is_released
    assert len(seen) == 2
    assert client.requests_sent == 2


async def test_server_error_after_retries(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request]
) -> None:
    client = make_client([httpx.Response(502)], max_retries=1, retry_max_wait=0.01)
    with pytest.raises(OESServerError):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert len(seen) == 2


async def test_every_attempt_passes_the_gate_and_a_429_penalizes_it(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request]
) -> None:
    gate = _Gate()
    client = make_client(
        [
            httpx.Response(429, headers={"Retry-After": "0.02"}),
            httpx.Response(200, json=allocation_body(status="cleared")),
        ],
        gate=gate,
        max_retries=1,
        retry_max_wait=5,
    )
    await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert gate.acquired == 2
    assert gate.released == [("ticket", 1), ("ticket", 2)]  # each ticket back once its answer came
    assert gate.penalties == [0.02]  # Retry-After, for the whole connection
    assert gate.penalized_tickets == [("ticket", 1)]  # the throttled request's ticket, for the adaptive limit


async def test_rate_limit_error_when_retries_run_out(make_client: Callable[..., OESAsyncClient]) -> None:
    gate = _Gate()
    client = make_client([httpx.Response(429, headers={"Retry-After": "1"})], gate=gate, max_retries=0)
    with pytest.raises(OESRateLimitError) as info:
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert info.value.retry_after == 1.0
    assert gate.penalties == [1.0]


async def test_transport_failure_releases_the_ticket_and_is_transient(
    make_client: Callable[..., OESAsyncClient],
) -> None:
    gate = _Gate()
    client = make_client([httpx.ConnectError("refused")], gate=gate, max_retries=0)
    with pytest.raises(OESConnectionError, match="ConnectError") as info:
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert info.value.transient
    assert gate.released == [("ticket", 1)]


async def test_timeout_names_the_timeouts(make_client: Callable[..., OESAsyncClient]) -> None:
    client = make_client([httpx.ReadTimeout("slow")], max_retries=0, connect_timeout=2.0, read_timeout=3.0)
    with pytest.raises(OESConnectionError, match=r"2\.0/3\.0 s"):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")


async def test_missing_token_sends_nothing(
    make_client: Callable[..., OESAsyncClient], seen: list[httpx.Request]
) -> None:
    gate = _Gate()
    client = make_client([httpx.Response(200, json=allocation_body())], gate=gate, token="")
    with pytest.raises(OESAuthenticationError, match="Password"):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    assert seen == []
    assert gate.acquired == 0


async def test_body_over_the_limit_is_refused(make_client: Callable[..., OESAsyncClient]) -> None:
    client = make_client([httpx.Response(200, content=b" " * (MAX_RESPONSE_BYTES + 10))])
    with pytest.raises(OESResponseError, match="limit"):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")


async def test_declared_length_over_the_limit_is_refused_unread(make_client: Callable[..., OESAsyncClient]) -> None:
    body = json.dumps(allocation_body()).encode()
    client = make_client([httpx.Response(200, content=body, headers={"Content-Length": str(MAX_RESPONSE_BYTES + 1)})])
    with pytest.raises(OESResponseError, match="declares"):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")


async def test_another_allocation_in_the_answer_is_refused(make_client: Callable[..., OESAsyncClient]) -> None:
    client = make_client([httpx.Response(200, json=allocation_body(id=OTHER_ID, status="cleared"))])
    with pytest.raises(OESResponseError, match="refusing"):
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")


async def test_the_token_never_reaches_an_error(make_client: Callable[..., OESAsyncClient]) -> None:
    """A server echoing the Authorization header: the error quotes it, the client strips the token."""
    client = make_client([httpx.Response(404, json={"error": f"no allocation for Bearer {TOKEN}", "requestId": TOKEN})])
    with pytest.raises(OESNotFoundError) as info:
        await client.get_allocation(DEFAULT_ALLOCATION_ID, "ent1")
    exc = info.value
    texts = [str(exc), repr(exc), *map(repr, exc.args), *map(repr, vars(exc).values())]
    assert all(TOKEN not in t for t in texts), texts
    assert "Bearer ***" in str(exc)


async def test_repr_and_close(make_client: Callable[..., OESAsyncClient]) -> None:
    client = make_client([httpx.Response(200, json=allocation_body())])
    assert TOKEN not in repr(client)
    assert "oes_async" in repr(client)
    assert not client.is_closed
    await client.aclose()
    assert client.is_closed


def test_unreadable_ca_bundle_is_a_setting_error() -> None:
    with pytest.raises(OESInvalidRequestError, match="ca_bundle"):
        OESAsyncClient(_settings(ca_bundle="/no/such/bundle.pem"))

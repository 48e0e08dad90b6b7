"""A raw HTTP client of the simulated OES API, shared by the simulator's tests (no provider code involved)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

#: The change feed's query: newest final allocations first.
FEED = {"statuses": "cleared,released", "sortField": "updatedAt", "sortDirection": "DESC"}


class Api:
    """
    Minimal raw HTTP client of the simulated OES API.

    :param sim: the simulator to talk to.
    """

    def __init__(self, sim: OESSimulator) -> None:
        self.sim = sim
        self.session = requests.Session()

    def base(self, enterprise_id: str | None = None) -> str:
        """
        Return the allocations collection URL.

        :param enterprise_id: enterprise in the path (default: the simulator's).
        """
        enterprise = enterprise_id or self.sim.enterprise_id
        return f"{self.sim.url}/api/network/v1/enterprises/{enterprise}/clients/allocations"

    def get(
        self,
        allocation_id: str,
        enterprise_id: str | None = None,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """
        GET one allocation.

        :param allocation_id: allocation id in the path.
        :param enterprise_id: enterprise in the path.
        :param token: bearer token; "default" uses the simulator's, None sends no header.
        :param headers: more request headers.
        """
        sent = {} if token is None else {"Authorization": f"Bearer {self._token(token)}"}
        sent.update(headers or {})
        return self.session.get(f"{self.base(enterprise_id)}/{allocation_id}", headers=sent, timeout=10)

    def list(
        self,
        enterprise_id: str | None = None,
        token: str = "default",
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> requests.Response:
        """
        GET the allocation list.

        :param enterprise_id: enterprise in the path.
        :param token: bearer token; "default" uses the simulator's.
        :param headers: more request headers.
        :param params: query parameters.
        """
        sent = {"Authorization": f"Bearer {self._token(token)}", **(headers or {})}
        return self.session.get(self.base(enterprise_id), params=params, headers=sent, timeout=30)

    def ids(self, **params: Any) -> list[str]:
        """
        The ids of one list page (asserting a 200).

        :param params: query parameters.
        """
        response = self.list(**params)
        assert response.status_code == 200, response.text
        return [record["id"] for record in response.json()["allocations"]]

    def _token(self, token: str) -> str:
        return self.sim.token if token == "default" else token


def assert_error(response: requests.Response, status: int, name: str) -> dict[str, Any]:
    """
    Assert an API error answer in BitGo's shape and return its body.

    :param response: the answer.
    :param status: the expected HTTP status.
    :param name: the expected error ``name``.
    """
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "name", "requestId"}
    assert body["name"] == name
    assert isinstance(body["error"], str)
    assert body["error"]
    uuid.UUID(body["requestId"])
    return body


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
    """
    Poll ``predicate`` until it returns something truthy; return that (fail after ``timeout`` seconds).

    :param predicate: the state to wait for.
    :param timeout: seconds before failing.
    :param what: named in the failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def epoch_ms(iso: str) -> int:
    """
    Epoch milliseconds of an API timestamp such as ``2026-01-01T00:00:00.123Z``.

    :param iso: the timestamp.
    """
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)

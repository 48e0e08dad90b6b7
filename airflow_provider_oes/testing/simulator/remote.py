"""
Out-of-process use: :class:`OESSimulatorClient` drives a simulator through its ``/_sim/`` control API,
:class:`OESSimulatorProcess` runs one in a child process (``python -m airflow_provider_oes.testing.simulator``).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_oes.testing.simulator._common import (
    BITGO_RATE_LIMIT,
    DEFAULT_ENTERPRISE_ID,
    DEFAULT_TOKEN,
    Runnable,
    parse_iso,
)
from airflow_provider_oes.testing.simulator.rate_limit import max_in_window

if TYPE_CHECKING:
    from collections.abc import Sequence


class OESSimulatorClient:
    """
    Drive a simulator running elsewhere through its ``/_sim/`` control API.

    :param url: the simulator's base URL, e.g. ``http://127.0.0.1:8080``.
    :param timeout: HTTP timeout in seconds.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        response = self._http.request(method, path, json=body, **extra)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            if response.status_code == 404:
                raise KeyError(message)
            raise ValueError(message)
        return response.json()

    def health(self) -> dict[str, Any]:
        """Return ``/_sim/health`` (status, url, token, enterpriseId)."""
        result: dict[str, Any] = self._call("GET", "/_sim/health")
        return result

    def add_allocation(self, **kwargs: Any) -> str:
        """
        Add an allocation; see :meth:`OESSimulator.add_allocation` for the keyword arguments.

        :param kwargs: JSON-serialisable keyword arguments (``created_at`` as an ISO string).
        """
        if isinstance(kwargs.get("created_at"), datetime):
            kwargs["created_at"] = kwargs["created_at"].isoformat()
        return str(self._call("POST", "/_sim/allocations", kwargs)["id"])

    def add_allocations(self, count: int, **kwargs: Any) -> list[str]:
        """
        Add ``count`` waiting allocations at once; see :meth:`OESSimulator.add_allocations`.

        :param count: how many.
        :param kwargs: the other keyword arguments of :meth:`OESSimulator.add_allocations`.
        """
        answer = self._call("POST", "/_sim/allocations/bulk", {"count": count, **kwargs}, timeout=120.0)
        return [str(i) for i in answer["ids"]]

    def set_status(self, allocation_id: str, status: str, reason: str | None = None, late_by: float = 0.0) -> None:
        """
        Change an allocation's status now; see :meth:`OESSimulator.set_status`.

        :param allocation_id: the allocation.
        :param status: ``cleared``, ``released`` or ``reserved``.
        :param reason: the new reason.
        :param late_by: stamp ``updatedAt`` this many seconds in the past.
        """
        body = {"status": status, "reason": reason, "late_by": late_by}
        self._call("POST", f"/_sim/allocations/{allocation_id}/status", body)

    def schedule_flips(self, allocation_ids: Sequence[str], **kwargs: Any) -> float:
        """
        Schedule status changes; see :meth:`OESSimulator.schedule_flips`.

        :param allocation_ids: the allocations to flip.
        :param kwargs: ``status``, ``at``, ``start``, ``rate``, ``reason``, ``late_by``.
        :return: seconds from now until the last flip.
        """
        body = {"allocation_ids": list(allocation_ids), **kwargs}
        return float(self._call("POST", "/_sim/flips", body, timeout=120.0)["last_in"])

    def flip_after_requests(self, allocation_ids: Sequence[str], **kwargs: Any) -> None:
        """
        Flip after the next API requests are answered; see :meth:`OESSimulator.flip_after_requests`.

        :param allocation_ids: the allocations to flip.
        :param kwargs: ``status``, ``requests``, ``reason``, ``late_by``.
        """
        self._call("POST", "/_sim/flips/after_requests", {"allocation_ids": list(allocation_ids), **kwargs})

    @property
    def pending_flips(self) -> int:
        """Scheduled flips not yet applied."""
        return int(self._call("GET", "/_sim/flips")["pending"])

    def get_record(self, allocation_id: str) -> dict[str, Any]:
        """
        Return the current JSON record of an allocation (no read counted).

        :param allocation_id: the allocation.
        """
        record: dict[str, Any] = self._call("GET", f"/_sim/allocations/{allocation_id}")
        return record

    def add_partner(self, **kwargs: Any) -> str:
        """Add a partner; see :meth:`OESSimulator.add_partner`."""
        return str(self._call("POST", "/_sim/partners", kwargs)["id"])

    def add_settlement(self, **kwargs: Any) -> str:
        """
        Add a settlement; see :meth:`OESSimulator.add_settlement`.

        :param kwargs: JSON-serialisable keyword arguments (``created_at`` as an ISO string).
        """
        if isinstance(kwargs.get("created_at"), datetime):
            kwargs["created_at"] = kwargs["created_at"].isoformat()
        return str(self._call("POST", "/_sim/settlements", kwargs)["id"])

    def set_settlement_status(self, settlement_id: str, status: str, reason: str | None = None) -> None:
        """Change a settlement's status now; see :meth:`OESSimulator.set_settlement_status`."""
        self._call("POST", f"/_sim/settlements/{settlement_id}/status", {"status": status, "reason": reason})

    def raise_dispute(self, settlement_id: str, **kwargs: Any) -> str:
        """Raise a dispute; see :meth:`OESSimulator.raise_dispute`."""
        return str(self._call("POST", "/_sim/disputes", {"settlement_id": settlement_id, **kwargs})["id"])

    def retract_dispute(self, dispute_id: str, reason: str | None = None) -> None:
        """Retract a dispute; see :meth:`OESSimulator.retract_dispute`."""
        self._call("POST", f"/_sim/disputes/{dispute_id}/retract", {"reason": reason})

    def get_settlement_record(self, settlement_id: str) -> dict[str, Any]:
        """The settlement's current JSON record; see :meth:`OESSimulator.get_settlement_record`."""
        record: dict[str, Any] = self._call("GET", f"/_sim/settlements/{settlement_id}")
        return record

    def inject_fault(self, kind: str, **options: Any) -> None:
        """
        Queue a fault; see :meth:`OESSimulator.inject_fault`.

        :param kind: fault kind, one of :data:`FAULT_KINDS`.
        :param options: ``count``, ``allocation_id``, ``retry_after``, ``delay`` (JSON values).
        """
        self._call("POST", "/_sim/faults", {"kind": kind, **options})

    def clear_faults(self) -> None:
        """Remove every queued fault."""
        self._call("DELETE", "/_sim/faults")

    @property
    def request_count(self) -> int:
        """Number of API requests the simulator has served."""
        return int(self._call("GET", "/_sim/stats")["request_count"])

    @property
    def requests(self) -> list[tuple[str, str, str, float]]:
        """The API requests served: ``(method, path, query_string, monotonic time in the server)``."""
        rows: list[list[Any]] = self._call("GET", "/_sim/stats")["requests"]
        return [(str(m), str(p), str(q), float(t)) for m, p, q, t in rows]

    @property
    def enterprise_id_headers(self) -> list[str | None]:
        """The ``enterprise-id`` header of each API request served (None when absent)."""
        headers: list[str | None] = self._call("GET", "/_sim/stats")["enterprise_id_headers"]
        return headers

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """The per-token limit as ``(requests, window seconds)``, or None when unlimited."""
        answer = self._call("GET", "/_sim/rate_limit")
        return None if answer["limit"] is None else (int(answer["limit"]), float(answer["window"]))

    def set_rate_limit(self, limit: int | None, window: float = 60.0) -> None:
        """
        Set the per-token rate limit; see :meth:`OESSimulator.set_rate_limit`.

        :param limit: requests per window; None removes the limit.
        :param window: the window in seconds.
        """
        self._call("POST", "/_sim/rate_limit", {"limit": limit, "window": window})

    def token_requests(self, token: str | None = None) -> list[tuple[float, bool]]:
        """
        Every API request presenting ``token``: ``(monotonic time in the server, admitted)``.

        :param token: an accepted token (default: the simulator's).
        """
        rows = self._call("POST", "/_sim/token_requests", {"token": token})["requests"]
        return [(float(t), bool(ok)) for t, ok in rows]

    def max_requests_in_window(self, token: str | None = None, window: float = 60.0, admitted: bool = False) -> int:
        """
        The most requests of ``token`` received in any sliding window; see
        :meth:`OESSimulator.max_requests_in_window`.

        :param token: an accepted token (default: the simulator's).
        :param window: window length in seconds.
        :param admitted: count only admitted requests.
        """
        return max_in_window([t for t, ok in self.token_requests(token) if ok or not admitted], window)

    def add_token(self, token: str) -> None:
        """
        Accept another access token, with its own rate limit.

        :param token: the bearer token to accept.
        """
        self._call("POST", "/_sim/tokens", {"token": token})

    @property
    def clock_offset(self) -> float:
        """Seconds the simulator's clock runs ahead of the machine's."""
        return float(self._call("GET", "/_sim/clock")["offset"])

    def set_clock_offset(self, seconds: float) -> None:
        """
        Skew the simulator's clock; see :meth:`OESSimulator.set_clock_offset`.

        :param seconds: the offset; positive runs ahead.
        """
        self._call("POST", "/_sim/clock", {"seconds": seconds})

    def now(self) -> datetime:
        """The simulator's clock."""
        return parse_iso(self._call("GET", "/_sim/clock")["now"])

    def reject_list(self, status: int | None = 404, feed_only: bool = False) -> None:
        """
        Make the list endpoint refuse; see :meth:`OESSimulator.reject_list`.

        :param status: the HTTP status to answer; None answers again.
        :param feed_only: refuse only the feed query (``sortField=updatedAt``).
        """
        self._call("POST", "/_sim/list_rejection", {"status": status, "feed_only": feed_only})

    def reject_feed(self, status: int | None = 400) -> None:
        """
        Make the list endpoint refuse the feed query; see :meth:`OESSimulator.reject_feed`.

        :param status: the HTTP status to answer; None answers again.
        """
        self.reject_list(status, feed_only=True)

    def reset_counts(self) -> None:
        """Forget the API requests served so far."""
        self._call("POST", "/_sim/reset_counts")

    def reset(self) -> None:
        """Forget allocations, flips, faults and counts; restore the initial clock and rate limit."""
        self._call("POST", "/_sim/reset")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()


class OESSimulatorProcess(Runnable):
    """
    Run the simulator in a child process (``python -m airflow_provider_oes.testing.simulator``).

    :param port: port for the child; 0 lets it pick a free one.
    :param token: bearer token the API accepts.
    :param enterprise_id: default enterprise id.
    :param startup_timeout: seconds to wait for ``/_sim/health``.
    :param rate_limit: ``(requests, window seconds)`` per token, BitGo's 360 per 60 s by default; None: no limit.
    :param clock_offset: seconds the simulator's clock runs ahead of the machine's.
    """

    def __init__(
        self,
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        enterprise_id: str = DEFAULT_ENTERPRISE_ID,
        startup_timeout: float = 20.0,
        rate_limit: tuple[int, float] | None = BITGO_RATE_LIMIT,
        clock_offset: float = 0.0,
    ) -> None:
        self.port = port
        self.token = token
        self.enterprise_id = enterprise_id
        self.rate_limit, self.clock_offset = rate_limit, clock_offset
        self.startup_timeout = startup_timeout
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._client: OESSimulatorClient | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        #: Exit code of the child once stopped (0 when it shut down cleanly on SIGTERM).
        self.returncode: int | None = None

    @property
    def client(self) -> OESSimulatorClient:
        """Control-API client for the child simulator."""
        return self._require_started(self._client)

    @property
    def pid(self) -> int:
        """Process id of the child."""
        return self._require_started(self._proc).pid

    def start(self) -> OESSimulatorProcess:
        """Spawn the child, read its URL from stdout and wait until ``/_sim/health`` answers."""
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-m",
            "airflow_provider_oes.testing.simulator",
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--enterprise-id",
            self.enterprise_id,
            "--rate-limit",
            "none" if self.rate_limit is None else f"{self.rate_limit[0]}/{self.rate_limit[1]:g}",
            "--clock-offset",
            str(self.clock_offset),
        ]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._pump, args=(self._proc,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            while not self.url:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
                if line is None:
                    raise RuntimeError(f"the simulator process exited with {self._proc.wait()}")
                found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
                if found:
                    self.url = found.group(1)
                    self.port = int(self.url.rsplit(":", 1)[1])
            self._client = OESSimulatorClient(self.url)
            while True:
                try:
                    self._client.health()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s) and close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self.returncode = self._proc.returncode
            self._proc = None

"""The simulator's shared vocabulary: defaults, the API's enumerations, date and error formatting."""

from __future__ import annotations

import email.utils
import functools
import os
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, TypeVar

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

#: An enterprise the simulated caller is a member of, but which has no OES license (answers 403).
UNLICENSED_ENTERPRISE_ID = "unlicensed-enterprise"
DEFAULT_TOKEN = "sim-token"
DEFAULT_ENTERPRISE_ID = "sim-enterprise"
#: connectionId given to allocations added without one.
DEFAULT_CONNECTION_ID = "6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f"
#: partner of the connection of allocations added without one (matched by the list's ``partnerIds``).
DEFAULT_PARTNER_ID = "0a4e2b6c-8d1f-4e3a-9b5c-7d6e5f4a3b2c"
DEFAULT_INITIATED_BY = "sim-user"
DEFAULT_RESERVED_REASON = "awaiting partner confirmation"
DEFAULT_RELEASED_REASON = "insufficient balance"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

API_PREFIX = "/api/network/v1/enterprises"
#: Header BitGo's own SDK sends with the enterprise id (besides the id in the path).
ENTERPRISE_HEADER = "enterprise-id"
STATUSES = ("cleared", "released", "reserved")
TYPES = ("allocation", "deallocation")
SORT_FIELDS = ("id", "updatedAt", "quantity", "currency")
SORT_DIRECTIONS = ("ASC", "DESC")
FINAL_STATUSES = frozenset({"cleared", "released"})
#: BitGo's limit for an authenticated user: 360 requests per 60 s (``(limit, window seconds)``).
BITGO_RATE_LIMIT = (360, 60.0)

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value))


def uuid4_strings(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as strings, about five times faster than ``uuid.uuid4()`` each."""
    raw = bytearray(os.urandom(16 * count))
    for offset in range(0, 16 * count, 16):
        raw[offset + 6] = (raw[offset + 6] & 0x0F) | 0x40  # version 4
        raw[offset + 8] = (raw[offset + 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (the API's resolution); naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_ms(ms: int) -> str:
    """
    Format epoch milliseconds like the API does: UTC, millisecond precision, ``Z`` suffix.

    :param ms: milliseconds since the epoch.
    """
    # a page holds rows from few distinct seconds: formatting each second once keeps a 1000-row page cheap
    return f"{_iso_second(ms // 1000)}{ms % 1000:03d}Z"


class Clock:
    """
    The simulator's wall clock: the machine's clock plus an offset (to model skew against a client).

    Every ``createdAt``, ``updatedAt`` and ``Date`` header comes from here, at millisecond resolution.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = float(offset)

    @property
    def offset(self) -> float:
        """Seconds added to the machine's clock."""
        with self._lock:
            return self._offset

    @offset.setter
    def offset(self, seconds: float) -> None:
        with self._lock:
            self._offset = float(seconds)

    def now_ms(self) -> int:
        """The simulator's now, in epoch milliseconds."""
        return int((time.time() + self.offset) * 1000)

    def wall_at_monotonic(self) -> Callable[[float], float]:
        """A function from ``time.monotonic()`` values to the simulator's epoch seconds (one reading)."""
        shift = time.time() + self.offset - time.monotonic()
        return lambda moment: moment + shift

    def http_date(self) -> str:
        """Now as an HTTP ``Date`` header value (RFC 9110 IMF-fixdate, 1 s resolution)."""
        return email.utils.formatdate(time.time() + self.offset, usegmt=True)


def parse_iso(value: str) -> datetime:
    """
    Parse an ISO 8601 date-time (``Z`` accepted, naive means UTC).

    :param value: the text to parse.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def csv_values(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _error_body(message: str, name: str) -> dict[str, str]:
    return {"error": message, "name": name, "requestId": str(uuid.uuid4())}


def error_response(status: int, message: str, name: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An API error answer in BitGo's shape: ``{"error", "name", "requestId"}``."""
    return JSONResponse(_error_body(message, name), status_code=status, headers=headers)


_Self = TypeVar("_Self", bound="Runnable")
_T = TypeVar("_T")


class Runnable:
    """A context manager over ``start()`` / ``stop()`` (the in-process server and the child process)."""

    def start(self: _Self) -> _Self:  # pragma: no cover - always overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _require_started(self, value: _T | None) -> _T:
        """Return ``value``, set by :meth:`start`; raise a clear error when not started."""
        if value is None:
            raise RuntimeError(f"the {type(self).__name__} is not started")
        return value

    def __enter__(self: _Self) -> _Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

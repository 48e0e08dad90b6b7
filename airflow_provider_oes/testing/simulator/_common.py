"""The simulator's shared vocabulary: defaults, the API's enumerations, date and error formatting."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from types import TracebackType

#: An enterprise the simulated caller is a member of, but which has no OES license (answers 403).
UNLICENSED_ENTERPRISE_ID = "unlicensed-enterprise"
DEFAULT_TOKEN = "sim-token"
DEFAULT_ENTERPRISE_ID = "sim-enterprise"
#: connectionId given to allocations added without one.
DEFAULT_CONNECTION_ID = "6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f"
DEFAULT_INITIATED_BY = "sim-user"
DEFAULT_RESERVED_REASON = "awaiting partner confirmation"
DEFAULT_RELEASED_REASON = "insufficient balance"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

API_PREFIX = "/api/network/v1/enterprises"
STATUSES = ("cleared", "released", "reserved")
TYPES = ("allocation", "deallocation")
SORT_FIELDS = ("id", "updatedAt", "quantity", "currency")
SORT_DIRECTIONS = ("ASC", "DESC")

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    """
    Format a datetime like the API does: UTC, millisecond precision, ``Z`` suffix.

    :param moment: an aware datetime.
    """
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse_iso(value: str) -> datetime:
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


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _error_body(message: str, name: str) -> dict[str, str]:
    return {"error": message, "name": name, "requestId": str(uuid.uuid4())}


def _error(status: int, message: str, name: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An API error answer in BitGo's shape: ``{"error", "name", "requestId"}``."""
    return JSONResponse(_error_body(message, name), status_code=status, headers=headers)


_Self = TypeVar("_Self", bound="_Runnable")
_T = TypeVar("_T")


class _Runnable:
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

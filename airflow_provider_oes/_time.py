"""The only time helpers: ISO 8601 (``Z``) and HTTP-Date parsing and formatting, epoch seconds and datetimes.

Server times travel as epoch seconds inside the engine and as ISO 8601 strings on the wire, in kwargs and in
stored state. Nothing here reads the local clock.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = [
    "format_api_datetime",
    "format_time",
    "format_timestamp",
    "format_utc_ms",
    "from_epoch",
    "parse_aware_datetime",
    "parse_http_date",
    "parse_iso",
    "parse_time",
    "parse_timestamp",
]


def parse_iso(text: str) -> datetime | None:
    """An ISO 8601 string (a trailing ``Z`` means UTC) as a datetime, naive if it has no offset; ``None`` if unreadable.

    :param text: The string (not stripped).
    """
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None


def from_epoch(epoch: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def parse_http_date(value: str | None) -> float | None:
    """The server's clock from an HTTP ``Date`` header, as epoch seconds; ``None`` when absent or unreadable.

    The header has whole-second resolution: it reads up to 1 s behind the server's clock, which only ever
    makes a window built from it reach further back (the safe side).
    """
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; a bare one is taken as UTC too
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_timestamp(value: object) -> float | None:
    """An ISO 8601 timestamp of the API (``createdAt``/``updatedAt``) as epoch seconds; ``None`` if unreadable.

    Cheap on purpose (no model validation): the change feed reads the ``updatedAt`` of every row it pages
    through. A timestamp without an offset is taken as UTC.
    """
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    moment = parse_iso(value)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_aware_datetime(value: object) -> datetime | None:
    """An API timestamp (``2025-11-01T10:05:00.000Z``) as an aware datetime; ``None`` if it is not one (no zone)."""
    if not isinstance(value, str):
        return None
    moment = parse_iso(value)
    return moment if moment is not None and moment.tzinfo is not None else None


def format_timestamp(epoch: float) -> str:
    """Epoch seconds as the API's ISO 8601 form in UTC with milliseconds (``2026-11-25T18:30:00.123Z``)."""
    return format_utc_ms(from_epoch(epoch))


def format_utc_ms(moment: datetime) -> str:
    """An aware datetime as the API's ISO 8601 form in UTC with milliseconds."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_api_datetime(value: datetime) -> str:
    """A model's datetime as the API writes it: milliseconds (finer digits kept), ``Z`` for UTC."""
    timespec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    if value.tzinfo is not None and value.utcoffset() == timezone.utc.utcoffset(None):
        return value.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")
    return value.isoformat(timespec=timespec)


def parse_time(value: object, what: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (``Z`` accepted, naive means UTC) or a datetime.

    :param value: The value to read.
    :param what: Its name, for the error message.
    :raises OESInvalidRequestError: naming the bad value.
    """
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    if isinstance(value, datetime):
        parsed: datetime | None = value
    elif isinstance(value, str):
        parsed = parse_iso(value.strip())
        if parsed is None:
            raise OESInvalidRequestError(
                f"{what} must be an ISO 8601 date-time like '2026-01-31T12:00:00Z', got {value[:60]!r}"
            )
    else:
        raise OESInvalidRequestError(f"{what} must be an ISO 8601 date-time string, got {value!r}")
    assert parsed is not None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z`` (exact round trip through :func:`parse_time`)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

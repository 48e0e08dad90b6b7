"""The only time helpers (``_time.py``): ISO 8601 and HTTP-Date, epoch seconds and datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_oes._time import (
    format_api_datetime,
    format_time,
    format_timestamp,
    format_utc_ms,
    from_epoch,
    parse_aware_datetime,
    parse_http_date,
    parse_time,
    parse_timestamp,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError

MOMENT = datetime(2026, 11, 25, 18, 30, 0, 123000, tzinfo=timezone.utc)


def test_api_timestamps_as_epoch_seconds() -> None:
    assert parse_timestamp("2026-11-25T18:30:00.123Z") == MOMENT.timestamp()
    assert parse_timestamp("2026-11-25T19:30:00.123+01:00") == MOMENT.timestamp()
    assert parse_timestamp("2026-11-25T18:30:00.123") == MOMENT.timestamp()  # no offset: UTC
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(None) is None
    assert parse_timestamp("2026") is None  # too short to be a timestamp
    assert format_timestamp(MOMENT.timestamp()) == "2026-11-25T18:30:00.123Z"
    assert format_utc_ms(MOMENT.astimezone(timezone(timedelta(hours=2)))) == "2026-11-25T18:30:00.123Z"
    assert from_epoch(MOMENT.timestamp()) == MOMENT


def test_http_date_is_the_servers_clock() -> None:
    assert parse_http_date("Wed, 25 Nov 2026 18:30:00 GMT") == MOMENT.replace(microsecond=0).timestamp()
    assert parse_http_date(None) is None
    assert parse_http_date("not a date") is None


def test_aware_datetimes_only_where_a_zone_is_required() -> None:
    assert parse_aware_datetime("2026-11-25T18:30:00.123Z") == MOMENT
    assert parse_aware_datetime("2026-11-25T18:30:00.123") is None
    assert parse_aware_datetime(42) is None


def test_stored_times_round_trip_exactly_and_bad_ones_are_named() -> None:
    fine = MOMENT + timedelta(microseconds=456)
    assert parse_time(format_time(fine), "t") == fine
    assert parse_time("2026-11-25T18:30:00", "t") == MOMENT.replace(microsecond=0)  # naive: UTC
    with pytest.raises(OESInvalidRequestError, match=r"start_time must be an ISO 8601 date-time .* got 'soon'"):
        parse_time("soon", "start_time")
    with pytest.raises(OESInvalidRequestError, match="got 7"):
        parse_time(7, "start_time")


def test_model_timestamps_keep_their_digits() -> None:
    assert format_api_datetime(MOMENT) == "2026-11-25T18:30:00.123Z"
    assert format_api_datetime(MOMENT + timedelta(microseconds=7)) == "2026-11-25T18:30:00.123007Z"

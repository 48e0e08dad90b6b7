"""Unit tests of the wire rules in ``_api``: id validation, paths, base URLs, body parsing."""

from __future__ import annotations

import json

import pytest

from airflow_provider_oes._api import (
    DEFAULT_BASE_URL,
    MAX_LIST_RESPONSE_BYTES,
    MAX_RESPONSE_BYTES,
    allocation_path,
    allocations_path,
    normalize_base_url,
    parse_allocation_body,
    parse_allocation_record,
    parse_allocations_list_body,
    validate_allocation_id,
    validate_enterprise_id,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError, OESResponseError
from airflow_provider_oes.models import AllocationStatus
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record

PREFIX = "/api/network/v1/enterprises"


@pytest.mark.parametrize("value", [DEFAULT_ALLOCATION_ID, DEFAULT_ALLOCATION_ID.upper()])
def test_valid_allocation_ids(value: str) -> None:
    assert validate_allocation_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid",
        "",
        DEFAULT_ALLOCATION_ID + "0",
        DEFAULT_ALLOCATION_ID.replace("-", ""),
        "../" + DEFAULT_ALLOCATION_ID[3:],
        DEFAULT_ALLOCATION_ID + "\n",
        None,
        123,
    ],
)
def test_invalid_allocation_ids_named(value: object) -> None:
    with pytest.raises(OESInvalidRequestError, match="allocation_id must be a UUID") as info:
        validate_allocation_id(value)
    assert repr(value) in str(info.value)


def test_long_bad_allocation_id_is_cut_short_in_message() -> None:
    with pytest.raises(OESInvalidRequestError) as info:
        validate_allocation_id("z" * 10_000)
    assert "10000 characters" in str(info.value)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("value", ["ent1", "a/b", "%2F", "q?x", "h#f", "ünïcödé", "x" * 128, "..."])
def test_valid_enterprise_ids(value: str) -> None:
    assert validate_enterprise_id(value) == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        (None, "must be a string"),
        (7, "must be a string"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        (" ", "whitespace"),
        ("ent 1", "whitespace"),
        ("ent1\n", "whitespace"),
        ("ent\x00", "control"),
        ("ent\x7f", "control"),
        ("x" * 129, "at most 128"),
    ],
)
def test_invalid_enterprise_ids_named(value: object, problem: str) -> None:
    with pytest.raises(OESInvalidRequestError, match="enterprise_id") as info:
        validate_enterprise_id(value)
    text = str(info.value)
    assert problem in text
    shown = repr(value)
    assert shown[:60] in text


def test_paths_encode_each_id_as_one_segment() -> None:
    assert allocations_path("ent1") == f"{PREFIX}/ent1/clients/allocations"
    assert (
        allocation_path("ent1", DEFAULT_ALLOCATION_ID) == f"{PREFIX}/ent1/clients/allocations/{DEFAULT_ALLOCATION_ID}"
    )
    assert allocation_path("a/b", DEFAULT_ALLOCATION_ID).startswith(f"{PREFIX}/a%2Fb/clients/")
    assert allocations_path("%2F") == f"{PREFIX}/%252F/clients/allocations"
    assert allocations_path("q?x#y") == f"{PREFIX}/q%3Fx%23y/clients/allocations"
    assert allocations_path("é") == f"{PREFIX}/%C3%A9/clients/allocations"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, DEFAULT_BASE_URL),
        ("", None, "https://app.bitgo.com"),
        ("   ", None, "https://app.bitgo.com"),
        ("https://app.bitgo-test.com", None, "https://app.bitgo-test.com"),
        ("https://app.bitgo-test.com/", None, "https://app.bitgo-test.com"),
        ("app.bitgo-test.com", None, "https://app.bitgo-test.com"),
        ("https://app.bitgo-test.com", 8443, "https://app.bitgo-test.com:8443"),
        ("https://app.bitgo-test.com:9443", 8443, "https://app.bitgo-test.com:9443"),
        ("http://127.0.0.1", 8080, "http://127.0.0.1:8080"),
        ("http://localhost:5000", None, "http://localhost:5000"),
        ("http://[::1]:5000", None, "http://[::1]:5000"),
        ("https://proxy.example.com/bitgo/", None, "https://proxy.example.com/bitgo"),
    ],
)
def test_normalize_base_url(host: str | None, port: int | None, expected: str) -> None:
    assert normalize_base_url(host, port) == expected


@pytest.mark.parametrize(
    ("host", "needle"),
    [
        ("http://app.bitgo.com", "plain http"),
        ("http://10.0.0.5:8080", "plain http"),
        ("http://localhost.evil.com", "plain http"),
        ("ftp://app.bitgo.com", "must be a URL"),
        ("https://", "must be a URL"),
        ("https://user:pw@app.bitgo.com", "credentials"),
        ("https://app.bitgo.com?x=1", "query"),
        ("https://app.bitgo.com:99999", "bad port"),
    ],
)
def test_normalize_base_url_refuses(host: str, needle: str) -> None:
    with pytest.raises(OESInvalidRequestError, match=needle) as info:
        normalize_base_url(host)
    assert "pw" not in str(info.value)


def _body(**overrides: object) -> bytes:
    return json.dumps(allocation_body(**overrides)).encode()


def test_parse_allocation_body() -> None:
    allocation = parse_allocation_body(_body(status="cleared"), allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")
    assert allocation.status is AllocationStatus.CLEARED


def test_parse_allocation_body_id_case_insensitive() -> None:
    allocation = parse_allocation_body(_body(), allocation_id=DEFAULT_ALLOCATION_ID.upper(), enterprise_id="e")
    assert allocation.id == DEFAULT_ALLOCATION_ID


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"", "not JSON"),
        (b"[]", "no 'allocation' object"),
        (b'{"allocation": []}', "no 'allocation' object"),
        (b'{"allocations": {}}', "no 'allocation' object"),
        (json.dumps({"allocation": allocation_record(status=...)}).encode(), "not a valid allocation"),
        (json.dumps({"allocation": allocation_record(retriable="yes")}).encode(), "retriable"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b" " * (MAX_RESPONSE_BYTES + 1), "byte limit"),
    ],
)
def test_parse_allocation_body_refuses(body: bytes, needle: str) -> None:
    with pytest.raises(OESResponseError, match=needle) as info:
        parse_allocation_body(body, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="ent1")
    assert DEFAULT_ALLOCATION_ID in str(info.value)


def test_load_json_reads_fractions_exactly_only_when_asked() -> None:
    # Settlement bodies ask for exact numbers; allocation bodies keep floats, so that an unknown numeric field
    # kept in ``model_extra`` stays plain JSON for XCom and events.
    from decimal import Decimal

    from airflow_provider_oes._api.bodies import load_json

    body = b'{"v": 9007199254740993.01, "n": 7}'
    assert load_json(body, 100, "test", exact=True) == {"v": Decimal("9007199254740993.01"), "n": 7}
    loose = load_json(body, 100, "test")
    assert type(loose["v"]) is float
    assert type(loose["n"]) is int
    with pytest.raises(OESResponseError, match="answer for test is 34 bytes, over the 33-byte limit"):
        load_json(body, 33, "test", exact=True)


def test_parse_allocation_body_refuses_another_id() -> None:
    other = "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
    with pytest.raises(OESResponseError, match="refusing") as info:
        parse_allocation_body(_body(id=other, status="cleared"), allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")
    assert other in str(info.value)
    assert DEFAULT_ALLOCATION_ID in str(info.value)
    assert info.value.allocation_id == DEFAULT_ALLOCATION_ID


def test_parse_allocation_record_validation_errors_name_fields() -> None:
    record = allocation_record(amount={"currency": "ofctbtc", "quantity": 12.5})
    with pytest.raises(OESResponseError, match=r"amount\.quantity"):
        parse_allocation_record(record, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")
    with pytest.raises(OESResponseError, match="body"):
        parse_allocation_record("not a dict", allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="e")


def test_parse_allocations_list_body() -> None:
    records = [allocation_record(), allocation_record(id="b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", bogus=1)]
    assert parse_allocations_list_body(json.dumps({"allocations": records}).encode(), enterprise_id="e") == records
    with pytest.raises(OESResponseError, match="no 'allocations' list"):
        parse_allocations_list_body(b'{"allocations": {}}', enterprise_id="e")
    with pytest.raises(OESResponseError, match="not JSON"):
        parse_allocations_list_body(b"nope", enterprise_id="e")
    with pytest.raises(OESResponseError, match="byte limit"):
        parse_allocations_list_body(b" " * (MAX_LIST_RESPONSE_BYTES + 1), enterprise_id="e")

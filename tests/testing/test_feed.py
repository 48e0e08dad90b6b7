"""The simulator's change feed, over real HTTP on 127.0.0.1: list filters, sorts, paging, flips, clock."""

from __future__ import annotations

import email.utils
import itertools
import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_oes.testing.simulator import (
    DEFAULT_PARTNER_ID,
    MAX_PAGE_SIZE,
    OESSimulator,
    OESSimulatorClient,
)
from tests.testing._api import FEED, Api, assert_error, epoch_ms, wait_for


def _final_key(record: dict[str, Any]) -> tuple[int, int, str]:
    return (epoch_ms(record["updatedAt"]), epoch_ms(record["createdAt"]), record["id"])


def _expected_feed(sim: OESSimulator, ids: list[str], descending: bool) -> list[str]:
    """The feed order computed by hand from the records: updatedAt, then createdAt asc and id asc."""
    records = [sim.get_record(i) for i in ids]
    final = [r for r in records if r["status"] in ("cleared", "released")]
    final.sort(key=lambda r: (epoch_ms(r["createdAt"]), r["id"]))
    final.sort(key=lambda r: epoch_ms(r["updatedAt"]), reverse=descending)
    return [r["id"] for r in final]


def _page_through(api: Api, page_size: int, **params: Any) -> list[str]:
    seen: list[str] = []
    for page_number in range(10_000):
        page = api.ids(pageSize=page_size, pageNumber=page_number, **params)
        seen.extend(page)
        if len(page) < page_size:
            return seen
    raise AssertionError("the feed never ended")


# ------------------------------------------------------------------------------------ clock
def test_every_status_change_stamps_updated_at_from_the_simulator_clock(oes_simulator: OESSimulator) -> None:
    oes_simulator.set_clock_offset(3600)
    aid = oes_simulator.add_allocation(final_status="reserved")
    created = oes_simulator.get_record(aid)
    assert abs(epoch_ms(created["createdAt"]) - (time.time() + 3600) * 1000) < 2000
    for status in ("released", "reserved", "cleared"):
        before = epoch_ms(oes_simulator.get_record(aid)["updatedAt"])
        time.sleep(0.005)
        lower = int((time.time() + 3600) * 1000)
        oes_simulator.set_status(aid, status)
        upper = int((time.time() + 3600) * 1000)
        record = oes_simulator.get_record(aid)
        assert record["status"] == status
        assert lower <= epoch_ms(record["updatedAt"]) <= upper
        assert epoch_ms(record["updatedAt"]) > before


def test_date_header_is_the_simulator_clock_on_every_answer(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.set_clock_offset(-7200)
    oes_simulator.inject_fault("503", allocation_id=aid)
    answers = [api.get(aid), api.get(aid, token="wrong"), api.list(**FEED), api.get(aid)]
    assert [a.status_code for a in answers] == [503, 401, 200, 200]
    for answer in answers:
        assert answer.headers["Date"].count(",") == 1  # one Date header, not the machine's as well
        stamp = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
        assert abs(stamp - (time.time() - 7200)) < 5, answer.headers["Date"]
    assert oes_simulator.clock_offset == -7200
    assert abs(oes_simulator.now().timestamp() - (time.time() - 7200)) < 1


def test_reset_restores_the_clock_offset_given_at_construction() -> None:
    with OESSimulator(clock_offset=30) as sim:
        sim.set_clock_offset(-5)
        sim.reset()
        assert sim.clock_offset == 30
        assert abs(sim.now().timestamp() - (time.time() + 30)) < 1


# ------------------------------------------------------------------------------------ timelines and the feed
def test_time_based_timeline_reaches_the_feed_without_any_read(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(final_status="released", reserved_for_seconds=0.3)
    assert api.ids(**FEED) == []
    rows = wait_for(lambda: api.list(**FEED).json()["allocations"], what="the flip in the feed")
    assert [r["id"] for r in rows] == [aid]
    assert rows[0]["status"] == "released"
    assert epoch_ms(rows[0]["updatedAt"]) == epoch_ms(rows[0]["createdAt"]) + 300  # stamped when it was due
    assert not [r for r in oes_simulator.requests if r[1].endswith(aid)]  # never read by id


def test_reads_counted_timeline_does_not_advance_through_the_feed(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1)
    for _ in range(3):
        assert api.ids(**FEED) == []  # the feed never serves the reserved record: no read counted
    assert api.get(aid).json()["allocation"]["status"] == "reserved"
    assert api.ids(**FEED) == [aid]


# ------------------------------------------------------------------------------------ order and paging
def test_feed_order_newest_first_with_ascending_tiebreak(oes_simulator: OESSimulator, api: Api) -> None:
    ids = oes_simulator.add_allocations(4)  # createdAt 1 ms apart, the last one now
    time.sleep(0.002)
    oes_simulator.schedule_flips(ids[:3], status=("cleared", "released"))  # a burst: one updatedAt
    wait_for(lambda: oes_simulator.pending_flips == 0, what="the burst")
    time.sleep(0.002)
    oes_simulator.set_status(ids[3], "cleared")
    stamps = {r["id"]: r["updatedAt"] for r in map(oes_simulator.get_record, ids)}
    assert stamps[ids[0]] == stamps[ids[1]] == stamps[ids[2]] < stamps[ids[3]]
    assert api.ids(**FEED) == [ids[3], ids[0], ids[1], ids[2]]  # the tie keeps createdAt ascending
    assert api.ids(**{**FEED, "sortDirection": "ASC"}) == ids
    assert [oes_simulator.get_record(i)["status"] for i in ids[:3]] == ["cleared", "released", "cleared"]


def test_feed_pages_match_the_order_computed_by_hand(oes_simulator: OESSimulator, api: Api) -> None:
    rng = random.Random(7)
    ids = oes_simulator.add_allocations(120, currency="ofctbtc")
    ids += oes_simulator.add_allocations(60, currency="ofcteth")
    flipped = rng.sample(ids, 150)
    for aid in flipped[:100]:  # late commits spread updatedAt over the past, with ties
        oes_simulator.set_status(aid, rng.choice(["cleared", "released"]), late_by=rng.choice([0, 1, 1, 2.5]))
    oes_simulator.schedule_flips(flipped[100:], status=("released", "cleared"))
    wait_for(lambda: oes_simulator.pending_flips == 0, what="the scheduled flips")
    for descending in (True, False):
        direction = "DESC" if descending else "ASC"
        expected = _expected_feed(oes_simulator, ids, descending)
        assert len(expected) == 150
        assert _page_through(api, 7, **{**FEED, "sortDirection": direction}) == expected
        # the same order without the index: the reserved rows filtered out by hand
        every = _page_through(api, 50, sortField="updatedAt", sortDirection=direction)
        final = set(expected)
        assert [i for i in every if i in final] == expected
        eth = [i for i in expected if oes_simulator.get_record(i)["amount"]["currency"] == "ofcteth"]
        assert _page_through(api, 9, currencies="ofcteth", **{**FEED, "sortDirection": direction}) == eth
    cleared = [
        i for i in _expected_feed(oes_simulator, ids, True) if oes_simulator.get_record(i)["status"] == "cleared"
    ]
    assert _page_through(api, 11, **{**FEED, "statuses": "cleared"}) == cleared


def test_changes_between_page_requests_shift_rows_but_lose_none(oes_simulator: OESSimulator, api: Api) -> None:
    ids = oes_simulator.add_allocations(12)
    for aid in ids[:10]:
        oes_simulator.set_status(aid, "cleared")
        time.sleep(0.002)
    newcomers = ids[10:]
    oes_simulator.flip_after_requests(newcomers, status="released", requests=1)
    first = api.ids(pageSize=4, pageNumber=0, **FEED)
    assert first == ids[9:5:-1]
    assert newcomers[0] not in first
    second = api.ids(pageSize=4, pageNumber=1, **FEED)  # two newer rows pushed everything down by two
    assert second == [ids[7], ids[6], ids[5], ids[4]]
    assert second[:2] == first[2:]  # rows reappear, none is skipped
    assert api.ids(pageSize=4, pageNumber=0, **FEED)[:2] == [newcomers[0], newcomers[1]]


def test_late_commit_lands_behind_a_readers_watermark(oes_simulator: OESSimulator, api: Api) -> None:
    minute_ago = datetime.now(timezone.utc) - timedelta(minutes=1)  # updatedAt never precedes createdAt
    early, late = (oes_simulator.add_allocation(final_status="reserved", created_at=minute_ago) for _ in range(2))
    oes_simulator.set_status(early, "cleared")
    top = api.list(pageSize=1, **FEED).json()["allocations"][0]
    watermark = epoch_ms(top["updatedAt"])
    oes_simulator.set_status(late, "released", late_by=5)
    record = oes_simulator.get_record(late)
    assert epoch_ms(record["updatedAt"]) <= watermark - 4900
    assert api.ids(**FEED) == [early, late]  # visible now, but sorted behind the row the reader stopped at


def test_scheduled_flips_at_times_and_at_a_steady_rate(oes_simulator: OESSimulator, api: Api) -> None:
    ids = oes_simulator.add_allocations(8)
    last = oes_simulator.schedule_flips(ids[:2], status="cleared", at=[0.2, 0.6])
    assert last == pytest.approx(0.6)
    assert oes_simulator.pending_flips == 2
    wait_for(lambda: api.ids(**FEED) == [ids[0]], what="the first timed flip")
    wait_for(lambda: oes_simulator.pending_flips == 0, what="the second timed flip")
    first, second = (epoch_ms(oes_simulator.get_record(i)["updatedAt"]) for i in ids[:2])
    assert abs(second - first - 400) <= 2
    oes_simulator.schedule_flips(ids[2:], status=("cleared", "released"), rate=50, start=0.1)
    wait_for(lambda: oes_simulator.pending_flips == 0, what="the steady flips")
    records = [oes_simulator.get_record(i) for i in ids[2:]]
    gaps = [epoch_ms(b["updatedAt"]) - epoch_ms(a["updatedAt"]) for a, b in itertools.pairwise(records)]
    assert all(abs(gap - 20) <= 2 for gap in gaps), gaps
    assert [r["status"] for r in records] == ["cleared", "released"] * 3


def test_schedule_flips_validates(oes_simulator: OESSimulator) -> None:
    aid = oes_simulator.add_allocation(final_status="reserved")
    with pytest.raises(ValueError, match="pending"):
        oes_simulator.schedule_flips([aid], status="pending")
    with pytest.raises(ValueError, match="1 allocation ids"):
        oes_simulator.schedule_flips([aid], at=[1, 2])
    with pytest.raises(ValueError, match="rate"):
        oes_simulator.schedule_flips([aid], rate=0)
    with pytest.raises(KeyError, match="unknown allocation"):
        oes_simulator.schedule_flips([str(uuid.uuid4())])
    with pytest.raises(ValueError, match="requests"):
        oes_simulator.flip_after_requests([aid], requests=0)


# ------------------------------------------------------------------------------------ filters, sorts, validation
def test_each_list_filter(oes_simulator: OESSimulator, api: Api) -> None:
    conn_a, conn_b, partner = (str(uuid.uuid4()) for _ in range(3))
    base = datetime(2026, 3, 1, tzinfo=timezone.utc)
    a = oes_simulator.add_allocation(connection_id=conn_a, created_at=base)
    b = oes_simulator.add_allocation(connection_id=conn_b, partner_id=partner, created_at=base + timedelta(seconds=1))
    c = oes_simulator.add_allocation(type="deallocation", currency="ofcteth", created_at=base + timedelta(seconds=2))
    d = oes_simulator.add_allocation(final_status="released", created_at=base + timedelta(seconds=3))
    assert api.ids(connectionIds=f"{conn_a},{conn_b}") == [a, b]
    assert api.ids(partnerIds=partner) == [b]
    assert api.ids(partnerIds=DEFAULT_PARTNER_ID) == [a, c, d]
    assert api.ids(types="deallocation") == [c]
    assert api.ids(currencies="ofcteth,ofctusd") == [c]
    assert api.ids(statuses="released") == [d]
    assert api.ids(allocationIds=f"{d},{a}") == [a, d]
    second = (base + timedelta(seconds=1)).isoformat()
    assert api.ids(createdOnOrAfter=second) == [b, c, d]
    assert api.ids(createdBefore=second) == [a, b]  # "created on or before this date", as the spec says
    assert api.ids(createdOnOrAfter=second, createdBefore="2026-03-01T00:00:02.000Z") == [b, c]


def test_sort_fields_keep_the_final_ascending_tiebreak(oes_simulator: OESSimulator, api: Api) -> None:
    big = "9" * 30
    rows = [
        oes_simulator.add_allocation(currency="ofcteth", quantity="20"),
        oes_simulator.add_allocation(currency="ofctbtc", quantity=big),
        oes_simulator.add_allocation(currency="ofcteth", quantity="3"),
        oes_simulator.add_allocation(currency="ofctbtc", quantity="20"),
    ]
    assert api.ids(sortField="quantity") == [rows[2], rows[0], rows[3], rows[1]]  # numeric, not text
    assert api.ids(sortField="quantity", sortDirection="DESC") == [rows[1], rows[0], rows[3], rows[2]]
    assert api.ids(sortField="currency") == [rows[1], rows[3], rows[0], rows[2]]
    assert api.ids(sortField="currency", sortDirection="DESC") == [rows[0], rows[2], rows[1], rows[3]]
    assert api.ids(sortField="id", sortDirection="DESC") == sorted(rows, reverse=True)
    assert api.ids(sortDirection="DESC") == rows  # no sortField: the final sort alone


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"sortField": "createdAt"}, "createdAt"),
        ({"sortDirection": "desc"}, "desc"),
        ({"statuses": "cleared,pending"}, "statuses"),
        ({"types": "transfer"}, "types"),
        ({"pageSize": str(MAX_PAGE_SIZE + 1)}, "pagination"),
        ({"pageSize": "1.5"}, "pagination"),
        ({"createdOnOrAfter": "2026-13-01"}, "2026-13-01"),
    ],
)
def test_bad_list_query_is_400_naming_the_value(api: Api, params: dict[str, str], named: str) -> None:
    body = assert_error(api.list(**FEED | params), 400, "InvalidRequestError")
    assert named in body["error"]


# ------------------------------------------------------------------------------------ bulk
def test_bulk_create_waiting_allocations(oes_simulator: OESSimulator, api: Api) -> None:
    ids = oes_simulator.add_allocations(2000, currency="ofcteth", quantity=7)
    assert len(set(ids)) == 2000
    assert all(uuid.UUID(i).version == 4 for i in ids)
    first, last = oes_simulator.get_record(ids[0]), oes_simulator.get_record(ids[-1])
    assert (first["status"], last["status"], last["amount"]) == (
        "reserved",
        "reserved",
        {"currency": "ofcteth", "quantity": "7"},
    )
    assert epoch_ms(last["createdAt"]) - epoch_ms(first["createdAt"]) == 1999
    assert abs(epoch_ms(last["createdAt"]) - time.time() * 1000) < 5000
    assert api.ids(pageSize=1000, pageNumber=1, statuses="reserved") == ids[1000:]
    assert api.ids(**FEED) == []
    with pytest.raises(ValueError, match="count"):
        oes_simulator.add_allocations(0)
    with pytest.raises(TypeError, match="created_at"):
        oes_simulator.add_allocations(2, created_at="2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="final_status"):
        oes_simulator.add_allocations(2, final_status="done")


def test_bulk_create_with_a_timeline(oes_simulator: OESSimulator, api: Api) -> None:
    cleared = oes_simulator.add_allocations(3, final_status="cleared", connection_id="conn-x")
    assert api.ids(**FEED) == cleared[::-1]  # final at creation: updatedAt = createdAt, 1 ms apart
    later = oes_simulator.add_allocations(2, final_status="released", reserved_for_seconds=0.2)
    assert {oes_simulator.get_record(i)["status"] for i in later} == {"reserved"}
    wait_for(lambda: len(api.ids(**FEED)) == 5, what="the timed flips")
    records = [oes_simulator.get_record(i) for i in later]
    assert {r["status"] for r in records} == {"released"}
    assert all(epoch_ms(r["updatedAt"]) == epoch_ms(r["createdAt"]) + 200 for r in records)
    assert api.ids(connectionIds="conn-x") == cleared


def test_feed_over_100k_waiting_allocations(oes_simulator: OESSimulator, api: Api) -> None:
    ids = oes_simulator.add_allocations(100_000)
    flipped = ids[::100]
    oes_simulator.schedule_flips(flipped, status=("cleared", "released"), rate=100_000)
    wait_for(lambda: oes_simulator.pending_flips == 0, what="1,000 flips")
    expected = _expected_feed(oes_simulator, flipped, descending=True)  # many flips share a millisecond
    assert sorted(expected) == sorted(flipped)
    assert api.ids(pageSize=100, **FEED) == expected[:100]
    assert api.ids(pageSize=100, pageNumber=9, **FEED) == expected[900:]
    assert api.ids(pageSize=100, pageNumber=10, **FEED) == []
    ascending = _expected_feed(oes_simulator, flipped, descending=False)
    assert api.ids(pageSize=100, pageNumber=3, **{**FEED, "sortDirection": "ASC"}) == ascending[300:400]


# ------------------------------------------------------------------------------------ a refusing list endpoint
@pytest.mark.parametrize(("status", "name"), [(400, "InvalidRequestError"), (404, "NotFoundError")])
def test_reject_feed_refuses_only_the_feed_query(oes_simulator: OESSimulator, api: Api, status: int, name: str) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.reject_feed(status)
    assert_error(api.list(**FEED), status, name)
    assert_error(api.list(sortField="updatedAt"), status, name)
    assert api.ids(allocationIds=aid, statuses="cleared,released") == [aid]  # id batches still answer
    assert api.get(aid).status_code == 200
    oes_simulator.reject_feed(None)
    assert api.ids(**FEED) == [aid]


def test_reject_list_refuses_every_list_request(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.reject_list(404)
    assert_error(api.list(allocationIds=aid), 404, "NotFoundError")
    assert_error(api.list(token="not-even-a-token"), 404, "NotFoundError")  # as if the route did not exist
    assert api.get(aid).json()["allocation"]["id"] == aid
    oes_simulator.reset()
    assert api.list().status_code == 200
    with pytest.raises(ValueError, match="status"):
        oes_simulator.reject_list(200)


# ------------------------------------------------------------------------------------ control API
def test_feed_scripting_through_the_control_api(oes_simulator: OESSimulator, api: Api) -> None:
    client = OESSimulatorClient(oes_simulator.url)
    try:
        ids = client.add_allocations(5, currency="ofcteth")
        assert [oes_simulator.get_record(i)["amount"]["currency"] for i in ids] == ["ofcteth"] * 5
        assert client.schedule_flips(ids[:2], status="released", at=[0.0, 0.05]) == pytest.approx(0.05)
        wait_for(lambda: client.pending_flips == 0, what="the flips")
        client.flip_after_requests([ids[2]], status="cleared", requests=1)
        assert api.ids(**FEED) == [ids[1], ids[0]]
        assert api.ids(**FEED)[0] == ids[2]
        client.set_status(ids[3], "cleared", late_by=60)
        assert api.ids(**FEED)[-1] == ids[3]
        client.set_clock_offset(12.5)
        assert client.clock_offset == 12.5
        assert abs(client.now().timestamp() - (time.time() + 12.5)) < 1
        client.reject_feed(404)
        assert api.list(**FEED).status_code == 404
        client.reject_list(None)
        assert api.list(**FEED).status_code == 200
        with pytest.raises(ValueError, match="count"):
            client.add_allocations(-1)
        with pytest.raises(KeyError):
            client.schedule_flips([str(uuid.uuid4())])
    finally:
        client.close()

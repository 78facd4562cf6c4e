"""Unit tests of TieSafePaginator with hand-made pages: both `updated_since` readings, both
precisions, tie groups across pages, and every boundary check that stops a sync."""

from __future__ import annotations

import pytest

from tap_apixx.bookmarks import format_stamp, parse_stamp
from tap_apixx.errors import (
    BoundaryCheckError,
    OutOfOrderError,
    PagingStalledError,
    TieGroupTooLargeError,
)
from tap_apixx.pagination import (
    MAX_PAGE_SIZE,
    Page,
    PageRequest,
    PagingCosts,
    SeenAt,
    TieSafePaginator,
)
from tap_apixx.tap import TapApixx

CONFIG = {"api_key": "apx_test_acme_8d2b6f0c4e1a", "data_url": "http://127.0.0.1:9/api/public/data"}


def ms(n: int) -> str:
    """The n-th millisecond of 2026 in the contract's form."""
    return format_stamp(1_767_225_600_000_000_000 + n * 1_000_000, 3)


def us(n: int) -> str:
    """The n-th microsecond of 2026, with a +00:00 offset."""
    return format_stamp(1_767_225_600_000_000_000 + n * 1000, 6)[:-1] + "+00:00"


def rec(ts: str, cid: str) -> dict:
    return {"canonical_id": cid, "updated_at": ts}


def page(*records: dict, cursor: str | None = "c", rid: str = "req_1") -> Page:
    return Page(list(records), cursor, rid)


def drain(paginator: TieSafePaginator, pages: list[Page]) -> tuple[list[str], list[PageRequest]]:
    """Feed pages to the paginator; return the ids it emits and the requests it made."""
    emitted, asked = [], []
    for p in pages:
        asked.append(paginator.current_value)
        emitted += [r["canonical_id"] for r in paginator.take(p)]
        paginator.advance(p)  # type: ignore[arg-type]
        if paginator.finished:
            break
    return emitted, asked


class Lookups:
    """A fake GET /{entity}/{id}: id -> updated_at now (None: 404)."""

    def __init__(self, now: dict[str, str | None]) -> None:
        self.now, self.asked = now, []

    def __call__(self, cid: str) -> tuple[str | None, str | None]:
        self.asked.append(cid)
        return self.now[cid], f"req_get_{cid}"


# Timestamps


def test_instants_are_compared_not_strings() -> None:
    assert parse_stamp("2026-01-01T00:00:00.5Z").ns == parse_stamp("2026-01-01T00:00:00.500000+00:00").ns
    assert parse_stamp("2026-01-01T01:00:00.000+01:00").ns == parse_stamp("2026-01-01T00:00:00Z").ns
    assert parse_stamp("2026-01-01T00:00:00.123456789Z").ns % 1000 == 789
    assert parse_stamp(ms(5)).digits == 3 and parse_stamp(us(5)).digits == 6
    for bad in ("2026-01-01", "2026-01-01T00:00:00", "yesterday", None, 5, "2026-13-01T00:00:00Z"):
        assert parse_stamp(bad) is None
    assert format_stamp(parse_stamp(us(1999)).ns, 3) == ms(1)  # cut down, never rounded up


# Requests: one unit back from the boundary, whatever the server's reading


def test_each_request_steps_back_one_unit_of_the_records_precision() -> None:
    p = TieSafePaginator("order", 3)
    drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b"), rec(ms(5), "c"))])
    assert p.current_value == PageRequest(ms(4), 3)
    p = TieSafePaginator("order", 3)
    drain(p, [page(rec(us(1), "a"), rec(us(2), "b"), rec(us(5), "c"))])
    assert p.current_value == PageRequest(format_stamp(parse_stamp(us(4)).ns, 6), 3)


@pytest.mark.parametrize("since_mode", ["exclusive", "inclusive"])
def test_tie_group_straddling_pages_is_read_whole_once(since_mode: str) -> None:
    before = [rec(ms(1), "a")] if since_mode == "inclusive" else []  # what `>=` adds at t-1
    p = TieSafePaginator("order", 3)
    emitted, asked = drain(p, [
        page(rec(ms(1), "a"), rec(ms(2), "b"), rec(ms(2), "c")),
        page(*before, rec(ms(2), "b"), rec(ms(2), "c"), rec(ms(2), "d"))
        if not before else page(*before, rec(ms(2), "b"), rec(ms(2), "c")),
        *([page(rec(ms(2), "b"), rec(ms(2), "c"), rec(ms(2), "d"))] if before else []),
        page(rec(ms(2), "b"), rec(ms(2), "c"), rec(ms(2), "d"), rec(ms(2), "e"), rec(ms(3), "f")),
        page(rec(ms(3), "f"), rec(ms(4), "g"), cursor=None),
    ])
    assert emitted == ["a", "b", "c", "d", "e", "f", "g"]
    if since_mode == "exclusive":
        assert asked == [PageRequest(None, 3), PageRequest(ms(1), 3), PageRequest(ms(1), MAX_PAGE_SIZE),
                         PageRequest(ms(2), 3)]
    else:  # the record at ms(1) shows `>=`: from then on the instant itself is asked
        assert asked == [PageRequest(None, 3), PageRequest(ms(1), 3), PageRequest(ms(2), 3),
                         PageRequest(ms(2), MAX_PAGE_SIZE), PageRequest(ms(3), 3)]
        assert p.inclusive
    assert p.finished
    assert p.costs.widened == 1 and p.costs.boundaries == 2
    assert p.costs.relearned == (1 if since_mode == "inclusive" else 0)


def test_an_adjacent_group_filling_the_stepped_back_page_is_asked_again_from_the_instant() -> None:
    p = TieSafePaginator("order", 3)
    emitted, asked = drain(p, [
        page(rec(ms(1), "a"), rec(ms(1), "z"), rec(ms(2), "b")),
        page(rec(ms(1), "a"), rec(ms(1), "z"), rec(ms(2), "b")),  # `>=` at ms(1) fills the page
        page(rec(ms(2), "b"), rec(ms(3), "c"), cursor=None),
    ])
    assert emitted == ["a", "z", "b", "c"]
    assert asked[1:] == [PageRequest(ms(1), 3), PageRequest(ms(2), 3)]
    assert p.costs.relearned == 1 and p.costs.widened == 0


def test_boundary_with_as_many_known_ids_as_a_page_asks_the_largest_page_at_once() -> None:
    p = TieSafePaginator("order", 2)
    drain(p, [page(rec(ms(1), "a"), rec(ms(1), "b"))])
    assert p.current_value == PageRequest(ms(0), MAX_PAGE_SIZE)


def test_stops_on_null_cursor() -> None:
    p = TieSafePaginator("order", 2)
    drain(p, [page(rec(ms(1), "a"), cursor=None)])
    assert p.finished
    p = TieSafePaginator("order", 5)
    emitted, _ = drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b")), page(rec(ms(2), "b"), cursor=None)])
    assert emitted == ["a", "b"]
    assert p.finished


def test_tie_group_larger_than_max_page_is_fatal_with_context() -> None:
    same = [rec("2026-01-01T00:00:00.000Z", str(i)) for i in range(MAX_PAGE_SIZE)]
    p = TieSafePaginator("invoice", 10)
    drain(p, [page(*same[:10])])
    assert p.current_value.limit == MAX_PAGE_SIZE
    with pytest.raises(TieGroupTooLargeError) as info:
        p.take(page(*same, rid="req_big"))
    text = str(info.value)
    assert "invoice" in text
    assert "2026-01-01T00:00:00.000Z" in text
    assert "req_big" in text


def test_resume_skips_ids_already_emitted_at_bookmark_only() -> None:
    start = parse_stamp(ms(0))
    p = TieSafePaginator("order", 10, start, resume=SeenAt(ms(1), {"a", "b"}))
    emitted, _ = drain(p, [page(rec(ms(0), "a"), rec(ms(1), "a"), rec(ms(1), "b"), rec(ms(1), "c"),
                                cursor=None)])
    assert emitted == ["a", "c"]  # "a" at ms(0) is another version: only ms(1)'s copy is skipped
    assert p.boundary == SeenAt(ms(1), {"a", "b", "c"})


def test_resume_without_lookback_rereads_the_bookmark_instant() -> None:
    bookmark = parse_stamp(ms(5))
    p = TieSafePaginator("order", 10, bookmark, resume=SeenAt(ms(5), {"a"}))
    assert p.current_value == PageRequest(ms(4), 10)
    emitted, _ = drain(p, [page(rec(ms(5), "a"), rec(ms(5), "b"), rec(ms(6), "c"), cursor=None)])
    assert emitted == ["b", "c"]


def test_records_before_the_start_are_not_emitted() -> None:
    start = parse_stamp("2026-01-01T00:00:00.000250Z")  # finer than the records show
    p = TieSafePaginator("order", 10, start)
    assert p.current_value.since == ms(-1)  # one ms back, cut down: never past the start
    emitted, _ = drain(p, [page(rec(ms(-1), "x"), rec(ms(0), "y"), rec(ms(1), "a"), cursor=None)])
    assert emitted == ["a"]


def test_mixed_forms_of_one_instant_are_one_tie_group() -> None:
    p = TieSafePaginator("order", 2)
    emitted, _ = drain(p, [
        page(rec(ms(1), "a"), rec(ms(2), "b")),
        page(rec(us(2000), "b"), rec(us(3000), "c"), cursor=None),
    ])
    assert emitted == ["a", "b", "c"]


def test_costs_are_counted_and_described_per_boundary() -> None:
    costs = PagingCosts(boundaries=8, reread=30, widened=1, relearned=0, verified=1)
    assert costs.extra_requests == 2
    assert costs.describe() == ("8 page boundaries, 2 extra requests (0.25 per boundary: 1 widened, "
                                "0 relearned, 1 id checks), 30 records re-read")


# Boundary checks: the server's answer shows records could have been skipped


def test_known_id_missing_at_the_boundary_and_unchanged_is_one_clear_error() -> None:
    lookups = Lookups({"b": ms(2)})  # GET shows it still at the boundary instant
    p = TieSafePaginator("order", 3, lookup=lookups)
    drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b"), rec(ms(2), "c"))])
    with pytest.raises(BoundaryCheckError) as info:
        p.take(page(rec(ms(2), "c"), rec(ms(3), "d"), rid="req_skip"))
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("order: records could have been skipped: 1 of the 2 ids already read at "
                           "the boundary 2026-01-01T00:00:00.002Z did not come back (request_id=req_skip)")
    assert "req_skip" in text and "(e.g. b: updated_at 2026-01-01T00:00:00.002Z, request_id=req_get_b)" in text
    assert lookups.asked == ["b"]


@pytest.mark.parametrize("now", [ms(9), None], ids=["updated", "gone"])
def test_known_id_missing_because_updated_or_gone_is_not_an_error(now: str | None) -> None:
    lookups = Lookups({"b": now})
    p = TieSafePaginator("order", 3, lookup=lookups)
    emitted, _ = drain(p, [
        page(rec(ms(1), "a"), rec(ms(2), "b"), rec(ms(2), "c")),
        page(rec(ms(2), "c"), rec(ms(3), "d"), cursor=None),
    ])
    assert emitted == ["a", "b", "c", "d"]
    assert lookups.asked == ["b"] and p.costs.verified == 1


def test_known_id_read_again_later_in_the_page_needs_no_lookup() -> None:
    lookups = Lookups({})
    p = TieSafePaginator("order", 3, lookup=lookups)
    emitted, _ = drain(p, [
        page(rec(ms(1), "a"), rec(ms(2), "b"), rec(ms(2), "c")),
        page(rec(ms(2), "c"), rec(ms(3), "d"), rec(ms(4), "b"), cursor=None),
    ])
    assert emitted == ["a", "b", "c", "d", "b"]  # b's new version
    assert lookups.asked == []


def test_page_starting_after_the_boundary_is_an_error() -> None:
    p = TieSafePaginator("payment", 2, lookup=Lookups({"b": ms(2), "c": ms(2)}))
    drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b"))])
    drain(p, [page(rec(ms(2), "b"), rec(ms(2), "c"))])  # full, one instant: widened next
    with pytest.raises(BoundaryCheckError) as info:
        p.take(page(rec(ms(3), "d"), rid="req_after"))  # an exclusive reading of the instant
    text = str(info.value)
    assert text.startswith(f"payment: records could have been skipped: the page asked from "
                           f"updated_since={ms(1)} starts at {ms(3)}, after the boundary {ms(2)}, "
                           "and 2 of the 2 ids already read there did not come back")
    assert "req_after" in text


def test_without_a_way_to_look_ids_up_a_missing_id_is_an_error() -> None:
    p = TieSafePaginator("order", 2)
    drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b"))])
    with pytest.raises(BoundaryCheckError, match="not looked up"):
        p.take(page(rec(ms(3), "c"), cursor=None))


def test_resume_ids_that_do_not_come_back_are_checked() -> None:
    start = parse_stamp(ms(0))  # a lookback: the bookmark ms(5) is met mid-page
    p = TieSafePaginator("order", 10, start, SeenAt(ms(5), {"a", "b"}), Lookups({"b": ms(5)}))
    with pytest.raises(BoundaryCheckError, match=r"1 of the 2 ids emitted at the bookmark .*\.005Z of the previous run.*req_r"):
        p.take(page(rec(ms(1), "x"), rec(ms(5), "a"), rec(ms(6), "y"), rid="req_r"))
    p = TieSafePaginator("order", 10, parse_stamp(ms(5)), SeenAt(ms(5), {"a", "b"}),
                         Lookups({"a": ms(7), "b": None}))
    emitted, _ = drain(p, [page(rec(ms(6), "c"), rec(ms(7), "a"), cursor=None)])
    assert emitted == ["c", "a"]  # both explained: a updated, b gone


def test_record_before_updated_since_is_an_error() -> None:
    p = TieSafePaginator("order", 10, parse_stamp(ms(5)))
    with pytest.raises(BoundaryCheckError, match=r"asked updated_since=.*\.004Z.*req_b"):
        p.take(page(rec(ms(3), "a"), rid="req_b"))


def test_short_page_without_progress_ends_paging_whatever_the_cursor() -> None:
    p = TieSafePaginator("order", 5)
    emitted, _ = drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b")), page(rec(ms(2), "b"), cursor="stuck")])
    assert emitted == ["a", "b"] and p.finished


def test_full_page_without_progress_at_the_largest_page_is_an_error() -> None:
    p = TieSafePaginator("order", MAX_PAGE_SIZE)
    drain(p, [page(rec(ms(1), "a"), rec(ms(2), "b"))])
    between = [rec(us(1500), str(i)) for i in range(MAX_PAGE_SIZE)]  # finer than the records showed
    with pytest.raises(PagingStalledError, match=r"no progress past .*\.002Z.*req_s"):
        p.take(page(*between, rid="req_s"))


def test_out_of_order_records_are_an_error() -> None:
    p = TieSafePaginator("order", 10)
    with pytest.raises(OutOfOrderError, match="req_x"):
        p.take(page(rec(ms(2), "a"), rec(us(1999), "b"), rid="req_x"))


def test_seen_state_round_trip_is_bounded() -> None:
    seen = SeenAt(ms(1), {str(i) for i in range(5000)})
    state = seen.to_state()
    assert len(state["ids"]) == 2 * MAX_PAGE_SIZE
    assert SeenAt.from_state(state).ts == ms(1)
    assert SeenAt.from_state(None) == SeenAt()


# From settings and state to the first request


def test_start_point_is_later_of_start_date_and_bookmark_minus_lookback() -> None:
    state = {"bookmarks": {"order": {"replication_key": "updated_at",
                                     "replication_key_value": "2026-01-01T00:10:00.000Z",
                                     "seen_at_bookmark": {"updated_at": "2026-01-01T00:10:00.000Z",
                                                          "ids": ["a"]}}}}
    cases = [(None, "2026-01-01T00:04:59.999Z", 5),
             ("2025-06-01T00:00:00Z", "2026-01-01T00:04:59.999Z", 5),
             ("2026-01-01T00:07:30Z", "2026-01-01T00:07:29.999Z", 5),
             (None, "2026-01-01T00:09:59.999Z", 0)]
    for start_date, since, lookback in cases:
        config = {**CONFIG, "lookback_minutes": lookback, **({"start_date": start_date} if start_date else {})}
        paginator = TapApixx(config=config, state=state).streams["order"].get_new_paginator()
        assert paginator.current_value.since == since
        held = paginator.boundary if lookback == 0 else paginator.resume
        assert held == SeenAt("2026-01-01T00:10:00.000Z", {"a"})
    fresh = TapApixx(config={**CONFIG, "page_size": 7}).streams["order"].get_new_paginator()
    assert fresh.current_value == PageRequest(None, 7)


def test_microsecond_bookmark_steps_back_one_microsecond() -> None:
    bookmark = "2026-01-01T00:10:00.000250+00:00"
    state = {"bookmarks": {"order": {"replication_key_value": bookmark,
                                     "seen_at_bookmark": {"updated_at": bookmark, "ids": ["a"]}}}}
    config = {**CONFIG, "lookback_minutes": 0}
    paginator = TapApixx(config=config, state=state).streams["order"].get_new_paginator()
    assert paginator.current_value.since == "2026-01-01T00:10:00.000249Z"

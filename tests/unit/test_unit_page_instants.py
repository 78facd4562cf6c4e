"""The paginator reads a usual page in a few C loops (`page_instants`): it must agree, page for
page, with the record-by-record reading it skips, on good pages and on every kind of bad one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_apixx import pagination
from tap_apixx.bookmarks import instant_ns, page_instants
from tap_apixx.pagination import Page, TieSafePaginator


def stamp(day: int, second: int, micro: int, digits: int, zone: str) -> str:
    fraction = "" if digits == 0 else "." + f"{micro:06d}"[:digits]
    return f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}{fraction}{zone}"


usual_pages = st.builds(
    lambda digits, moments: [
        {"canonical_id": f"id-{i}", "updated_at": stamp(d, s, m, digits, "Z")} for i, (d, s, m) in enumerate(sorted(moments))
    ],
    st.sampled_from([0, 3, 6]),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 86399), st.integers(0, 999999)), min_size=1, max_size=40),
)

odd_values = st.sampled_from([
    None, 7, "", "2026-02-30T00:00:00.000Z", "2026-01-01T00:00:60.000Z", "2026-01-01T24:00:00.000Z",
    "2026-01-01T00:00:00.000+00:00", "2026-01-01t00:00:00.000Z", "2026-01-01T00:00:00.0001Z",
    "2026-01-01T00:00:00.000Z\n", "２０２６-01-01T00:00:00.000Z", "2026-01-01 00:00:00.000Z",
    "0001-01-01T00:00:00.000Z", "1677-09-21T00:12:43.145Z",  # before the paginator's lowest instant
])


@st.composite
def pages(draw) -> list:
    """A usual page, often spoiled: a value changed, a record swapped, an id dropped, a non-dict."""
    records = draw(usual_pages)
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, len(records) - 1))
        spoil = draw(st.sampled_from(["value", "precision", "swap", "id", "missing", "not a dict"]))
        if not isinstance(records[index], dict):
            continue  # spoilt already
        record = dict(records[index])
        if spoil == "value":
            record["updated_at"] = draw(odd_values)
        elif spoil == "precision":
            text = record.get("updated_at")
            record["updated_at"] = text.replace("Z", "0Z") if isinstance(text, str) and "." in text else text
        elif spoil == "swap" and len(records) > 1:
            other = draw(st.integers(0, len(records) - 1))
            records[index], records[other] = records[other], records[index]
            continue
        elif spoil == "id":
            record["canonical_id"] = draw(st.sampled_from([None, "", 5]))
        elif spoil == "missing":
            record.pop(draw(st.sampled_from(["updated_at", "canonical_id"])), None)
        elif spoil == "not a dict":
            record = draw(st.sampled_from([None, [], "x"]))
        records[index] = record
    return records


def read(records: list, page_at_once: bool) -> tuple:
    """What the paginator makes of `records`: its stamps and digits, or its error."""
    paginator = TieSafePaginator("order", 100)
    original = pagination.page_instants
    pagination.page_instants = original if page_at_once else (lambda records: None)
    try:
        stamps = paginator._stamps(Page(records, None, "req-1"))
        return "ok", stamps, paginator.digits_seen
    except Exception as exc:  # noqa: BLE001 (the kind and message are compared)
        return type(exc).__name__, str(exc)
    finally:
        pagination.page_instants = original


@settings(max_examples=1500, deadline=None)
@given(records=pages())
def test_a_page_at_once_reads_exactly_as_record_by_record(records) -> None:
    assert read(records, page_at_once=True) == read(records, page_at_once=False)


@settings(max_examples=300, deadline=None)
@given(records=usual_pages)
def test_the_usual_page_takes_the_page_at_once_path(records) -> None:
    found = page_instants(records)
    assert found is not None  # the fast path is what a normal sync takes
    expected = [instant_ns(r["updated_at"]) for r in records]
    assert found == ([ns for ns, _ in expected], max(d for _, d in expected))


@pytest.mark.parametrize("records", [
    [{"canonical_id": "a", "updated_at": "2026-01-01T00:00:01.000Z"}, {"canonical_id": "b", "updated_at": "2026-01-01T00:00:00.000Z"}],
    [{"canonical_id": "a", "updated_at": "2026-01-01T00:00:00.000Z"}, {"canonical_id": "b", "updated_at": "2026-01-01T00:00:00.000001Z"}],
    [{"canonical_id": "a", "updated_at": "2026-01-01T00:00:00.000+00:00"}],
    # before 1677-09-21, the paginator's lowest instant (a server's zero time, year 1)
    [{"canonical_id": "a", "updated_at": "0001-01-01T00:00:00.000Z"}, {"canonical_id": "b", "updated_at": "2026-01-01T00:00:00.000Z"}],
])
def test_a_page_out_of_order_or_of_mixed_form_goes_record_by_record(records) -> None:
    assert page_instants(records) is None
    assert read(records, page_at_once=True) == read(records, page_at_once=False)

"""Contract tests for the emulator's paging semantics: `updated_since` inclusive or exclusive,
`updated_at` in milliseconds (Z) or microseconds (+00:00), cursors in either form, tie groups."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from apixx_emulator.testing import EmulatorProcess
from apixx_emulator.timestamps import PRECISIONS, Precision, parse_us

DATA = "/api/public/data"
FORMS = {"ms": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"),
         "us": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")}
MODES = [(since, precision) for since in ("inclusive", "exclusive") for precision in ("ms", "us")]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def spellings(moment: datetime) -> list[str]:
    """One instant written every way the contract allows (and an offset other than UTC)."""
    utc = moment.astimezone(timezone.utc)
    return [utc.isoformat(timespec="microseconds"),
            utc.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            utc.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="microseconds")]


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=300, read_limit=10**9, write_limit=10**9) as emu:
        yield emu


def switch(emu: EmulatorProcess, since_mode: str, precision: str, cursor_mode: str = "exclusive") -> dict:
    return emu.control("POST", "/_emulator/reset", json={
        "since_mode": since_mode, "timestamp_precision": precision, "cursor_mode": cursor_mode})


def ids_since(emu: EmulatorProcess, entity: str, since: str) -> list[str]:
    response = emu.get(f"{DATA}/{entity}", params={"updated_since": since, "limit": 1000})
    assert response.status_code == 200, response.text
    return [r["canonical_id"] for r in response.json()["data"]]


def tie_groups(records: list[dict]) -> Counter:
    return Counter(r["updated_at"] for r in records)


@pytest.mark.parametrize("since_mode, precision", MODES)
def test_updated_at_has_the_precision_and_form_of_the_mode(emu, since_mode, precision):
    switch(emu, since_mode, precision)
    settings = emu.control("GET", "/_emulator/health")["settings"]
    assert (settings["since_mode"], settings["timestamp_precision"]) == (since_mode, precision)
    truth = emu.ground_truth("order")
    assert all(FORMS[precision].match(r["updated_at"]) for r in truth)
    listed = emu.get(f"{DATA}/order", params={"limit": 1000}).json()["data"]
    assert all(FORMS[precision].match(r["updated_at"]) for r in listed)
    if precision == "us":  # real microseconds, not milliseconds padded with zeros
        assert sum(not r["updated_at"].endswith("000+00:00") for r in truth) > len(truth) // 2
    instants = [instant(r["updated_at"]) for r in truth]
    assert instants == sorted(instants)


@pytest.mark.parametrize("since_mode, precision", MODES)
def test_updated_since_compares_instants_in_every_spelling(emu, since_mode, precision):
    switch(emu, since_mode, precision)
    truth = emu.ground_truth("customer")
    groups = tie_groups(truth)
    tied = next(stamp for stamp in sorted(groups) if groups[stamp] > 1 and stamp > truth[0]["updated_at"])
    pivot = instant(tied)
    checked = 0
    for moment in (pivot, pivot - timedelta(microseconds=1), pivot + timedelta(microseconds=1)):
        if since_mode == "inclusive":
            expected = [r["canonical_id"] for r in truth if instant(r["updated_at"]) >= moment]
        else:
            expected = [r["canonical_id"] for r in truth if instant(r["updated_at"]) > moment]
        for spelling in spellings(moment):
            assert ids_since(emu, "customer", spelling) == expected, (since_mode, precision, spelling)
            checked += 1
    assert checked == 9
    at_tie = ids_since(emu, "customer", tied)  # the tie group at the pivot: all in, or all out
    inside = [r["canonical_id"] for r in truth if r["updated_at"] == tied]
    assert set(inside) <= set(at_tie) if since_mode == "inclusive" else not set(inside) & set(at_tie)


@pytest.mark.parametrize("since_mode, precision", MODES)
def test_millisecond_spellings_of_a_bound(emu, since_mode, precision):
    """A client that writes bounds in milliseconds with a Z (the tap's own form) against either precision."""
    switch(emu, since_mode, precision)
    truth = emu.ground_truth("lead")
    stamp = truth[len(truth) // 2]["updated_at"]
    bound = instant(stamp).astimezone(timezone.utc)
    as_ms = bound.replace(microsecond=bound.microsecond // 1000 * 1000)  # rounded down to the millisecond
    text = as_ms.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    compare = (lambda a, b: a >= b) if since_mode == "inclusive" else (lambda a, b: a > b)
    expected = [r["canonical_id"] for r in truth if compare(instant(r["updated_at"]), as_ms)]
    assert ids_since(emu, "lead", text) == expected


@pytest.mark.parametrize("cursor_mode", ["exclusive", "inclusive"])
@pytest.mark.parametrize("precision", ["ms", "us"])
def test_cursor_accepts_either_spelling_and_keeps_its_mode(emu, cursor_mode, precision):
    switch(emu, "inclusive", precision, cursor_mode)
    first = emu.get(f"{DATA}/invoice", params={"limit": 100}).json()
    cursor = first["next_cursor"]
    assert cursor == first["data"][-1]["updated_at"] and FORMS[precision].match(cursor)
    pages = [emu.get(f"{DATA}/invoice", params={"limit": 100, "cursor": c}).json()["data"]
             for c in spellings(instant(cursor))]
    assert pages[0] == pages[1] == pages[2]
    boundary = instant(cursor)
    compare = (lambda a: a > boundary) if cursor_mode == "exclusive" else (lambda a: a >= boundary)
    truth = emu.ground_truth("invoice")
    assert [r["canonical_id"] for r in pages[0]] == [r["canonical_id"] for r in truth if compare(instant(r["updated_at"]))][:100]


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_tie_groups_exist_at_either_precision(emu, precision):
    """A group larger than a default page, and groups that a page boundary of 100 cuts in two."""
    switch(emu, "inclusive", precision)
    for entity in ("order", "refund"):
        truth = emu.ground_truth(entity)
        groups = tie_groups(truth)
        assert 100 < max(groups.values()) <= 1000
        stamps = [r["updated_at"] for r in truth]
        cut = [i for i in range(100, len(stamps), 100) if stamps[i - 1] == stamps[i]]
        assert cut, f"no tie group crosses a page boundary of 100 in {entity}"


def test_microsecond_data_has_the_same_records_and_ties_as_millisecond_data(emu):
    switch(emu, "inclusive", "ms")
    ms = emu.ground_truth("product")
    switch(emu, "inclusive", "us")
    us = emu.ground_truth("product")
    assert [r["canonical_id"] for r in ms] == [r["canonical_id"] for r in us]
    assert sorted(tie_groups(ms).values()) == sorted(tie_groups(us).values())
    for a, b in zip(ms, us):
        assert timedelta(0) <= instant(b["updated_at"]) - instant(a["updated_at"]) < timedelta(milliseconds=1)


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_churn_writes_the_dataset_form_and_takes_at_in_any_form(emu, precision):
    switch(emu, "inclusive", precision)
    result = emu.churn("shipment", updates=3, inserts=2, tie=True)
    stamp = result["updated_at"][0]
    assert FORMS[precision].match(stamp)
    assert set(ids_since(emu, "shipment", stamp)) == set(result["updated"] + result["inserted"])
    past = emu.ground_truth("shipment")[5]["updated_at"]
    late = emu.churn("shipment", inserts=1, at=spellings(instant(past))[1])
    record = emu.get(f"{DATA}/shipment/{late['inserted'][0]}").json()
    assert record["updated_at"] == past


def test_the_flags_set_the_modes(emulator_factory):
    emu = emulator_factory(since_mode="exclusive", timestamp_precision="us")
    settings = emu.control("GET", "/_emulator/health")["settings"]
    assert settings["since_mode"] == "exclusive" and settings["timestamp_precision"] == "us"
    truth = emu.ground_truth("order")
    assert FORMS["us"].match(truth[0]["updated_at"])
    assert truth[0]["canonical_id"] not in ids_since(emu, "order", truth[0]["updated_at"])


def test_reset_refuses_unknown_modes(emu):
    for body in ({"since_mode": "sometimes"}, {"timestamp_precision": "ns"}, {"cursor_mode": 1}):
        response = emu.http.post(emu.base_url + "/_emulator/reset", json=body, timeout=10)
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
        assert next(iter(body)) in response.json()["error"]["message"]


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_bounds_and_formats_agree_over_the_whole_range(precision):
    """The fast formatter (strftime) and the exact one (datetime) give the same strings, and a
    bound from any instant sorts where the instant does."""
    p: Precision = PRECISIONS[precision]
    for text in ("2025-07-01T00:00:00.000001Z", "2026-07-18T10:00:00.123456+00:00", "1970-01-01T00:00:00Z",
                 "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999+00:00"):
        us = parse_us(text)
        for inclusive in (True, False):
            bound = p.lower_bound(us, inclusive)
            assert bound == "~" or len(bound) == len(p.format(p.units(parse_us("2026-01-01T00:00:00Z"))))
            if bound != "~":
                assert (parse_us(bound) >= us) if inclusive else (parse_us(bound) > us)
                assert parse_us(bound) - us <= p.unit_us

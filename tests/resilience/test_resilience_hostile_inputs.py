"""Hostile input class 7 (state and catalog): any shape ends cleanly, and says which stream.

States and catalogs are generated: a valid one, then one defect at a random place (a wrong
type, an unparseable or out-of-range date, a bookmark in the future, an unknown stream, a
broken metadata entry). Each runs through the real command line in-process against a small
fake server. The expected outcome is known per defect: exit 1 with one line naming the stream
(and `state:` or `catalog:`), or exit 0 with a warning where going on loses nothing.
"""

from __future__ import annotations

import copy
import json
import typing as t
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.hostile import Tally, fuzz, run_cli, tally_fixture, write_inputs
from tests.helpers.hostile_server import (
    HostileServer,
    Reply,
    Request,
    data_page,
    data_records,
    json_reply,
    ops_item,
    ops_page,
)
from tests.helpers.resilience import no_secrets_anywhere  # noqa: F401  (autouse: scanned for the key)
from tests.helpers.tap import catalog_for

KEY = "apx_live_acme_hostile_inputs_0b3c9d"
tally = tally_fixture(7)
STREAMS = ("order", "runs")
RUNS = [{**ops_item(f"run_{i:03d}"), "started_at": f"2026-01-01T00:00:{i:02d}.000Z"}
        for i in range(5)]
NOW = datetime.now(timezone.utc)


def serve(request: Request) -> Reply:
    if request.path.startswith("/v1/runs"):
        return ops_page(RUNS, request)
    if request.path.startswith("/api/public/data/"):
        return data_page(data_records(5), request)
    return json_reply({"error": {"code": "not_found", "message": "nope"}}, 404)


@pytest.fixture(scope="module")
def server() -> t.Iterator[HostileServer]:
    with HostileServer(serve) as running:
        yield running


def run(server: HostileServer, tmp_path, state: t.Any = None, catalog: t.Any = None):
    config = {"api_key": KEY, "data_url": f"{server.url}/api/public/data",
              "api_url": f"{server.url}/v1", "max_parallel_streams": 1, "semantics_probe": False}
    argv = write_inputs(tmp_path, config=config, state=state,
                        catalog=catalog if catalog is not None else catalog_for(STREAMS))
    return run_cli(argv).check()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


PAST = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 12, 31),
                    timezones=st.just(timezone.utc)).map(iso)
IDS = st.lists(st.text("abcdef0123456789-", min_size=1, max_size=12), max_size=4)


@st.composite
def valid_states(draw: st.DrawFn) -> dict[str, t.Any]:
    bookmarks: dict[str, t.Any] = {}
    if draw(st.booleans()):
        ts = draw(PAST)
        order: dict[str, t.Any] = {"replication_key": "updated_at", "replication_key_value": ts}
        if draw(st.booleans()):
            order["seen_at_bookmark"] = {"updated_at": ts, "ids": draw(IDS)}
        bookmarks["order"] = order
    if draw(st.booleans()):
        bookmarks["runs"] = {"replication_key": "started_at", "replication_key_value": draw(PAST)}
    if draw(st.booleans()):
        bookmarks["flows"] = {}
    state: dict[str, t.Any] = {"bookmarks": bookmarks}
    if draw(st.booleans()):
        state["currently_syncing"] = draw(st.none() | st.sampled_from(STREAMS))
    return state


NOT_A_DICT = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                       st.lists(st.integers(), max_size=2))
NOT_A_DATE = st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(),
                       st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                            st.integers(), max_size=2),
                       st.sampled_from(["", "yesterday", "2026-13-01T00:00:00Z", "0",
                                        "2026-01-01T25:00:00Z", "  ", "NaN", "2026-02-30"]))
OUT_OF_RANGE = st.sampled_from(["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z",
                                "1969-12-31T23:59:59Z", "9999-12-31T23:59:59.999Z",
                                "2999-01-01T00:00:00Z"])


def future(days: float) -> str:
    return iso(NOW + timedelta(days=days))


@st.composite
def broken_states(draw: st.DrawFn) -> tuple[t.Any, str, str]:
    """(state, expected kind, stream or '' the line/warning must name)."""
    state = draw(valid_states())
    stream = draw(st.sampled_from(STREAMS))
    key = "updated_at" if stream == "order" else "started_at"
    bookmark = {"replication_key": key, "replication_key_value": draw(PAST)}
    defect = draw(st.sampled_from(["state", "bookmarks", "entry", "value", "range", "future",
                                   "key", "seen", "unknown"]))
    if defect == "state":  # (bytes are written as they are: b"null" is a JSON null)
        return draw(NOT_A_DICT.filter(lambda v: v is not None) | st.just(b"null")), "exit 1", ""
    if defect == "bookmarks":
        return {"bookmarks": draw(NOT_A_DICT.filter(lambda v: v is not None))}, "exit 1", ""
    if defect == "entry":
        state["bookmarks"][stream] = draw(NOT_A_DICT)
        return state, "exit 1", stream
    if defect in ("value", "range", "future"):
        value = {"value": NOT_A_DATE, "range": OUT_OF_RANGE,
                 "future": st.floats(1, 3650).map(future)}[defect]
        state["bookmarks"][stream] = {**bookmark, "replication_key_value": draw(value)}
        return state, "exit 1", stream
    if defect == "key":
        state["bookmarks"][stream] = {**bookmark, "replication_key": draw(
            st.sampled_from(["id", "created_at", "", "updated"])
            | NOT_A_DICT.filter(lambda v: v is not None))}  # null: no key named, the stream's
        return state, "exit 1", stream
    if defect == "seen":
        state["bookmarks"]["order"] = {"replication_key": "updated_at",
                                       "replication_key_value": draw(PAST),
                                       "seen_at_bookmark": draw(NOT_A_DICT.filter(lambda v: v is not None) | st.fixed_dictionaries(
                                           {"updated_at": NOT_A_DATE, "ids": NOT_A_DICT}))}
        return state, "exit 0, warning", "order"
    name = draw(st.sampled_from(["orders", "widget", "run", "customers", "zz"]))
    state["bookmarks"][name] = {"replication_key_value": draw(PAST)}
    return state, "exit 0, warning", name


@fuzz(30)
@given(state=valid_states())
def test_a_valid_state_syncs(state, server, tmp_path, tally: Tally) -> None:
    outcome = run(server, tmp_path, state=state)
    assert outcome.code == 0, (state, outcome.errors)
    tally.add(outcome.kind)


@fuzz(80)
@given(case=broken_states())
def test_a_broken_state_ends_in_one_line_or_a_warning(case, server, tmp_path, tally: Tally):
    state, expected, stream = case
    requests_before = len(server.requests)
    outcome = run(server, tmp_path, state=state)
    if expected == "exit 1":
        assert outcome.code == 1, (state, outcome.log[-1500:])
        assert outcome.errors[0].startswith("tap-apixx: error: state:"), outcome.errors
        assert f"'{stream}'" in outcome.errors[0] if stream else True, outcome.errors
        assert len(server.requests) == requests_before  # refused before any request
    else:
        assert outcome.code == 0, (state, outcome.errors)
        assert any(stream in w for w in outcome.warnings), outcome.warnings
    tally.add(outcome.kind)


def test_a_bookmark_in_the_future_names_the_stream(server, tmp_path) -> None:
    """Today: exit 0 with 0 records, the stream pinned until the clock catches up."""
    state = {"bookmarks": {"order": {"replication_key": "updated_at",
                                     "replication_key_value": future(400)}}}
    outcome = run(server, tmp_path, state=state)
    assert outcome.code == 1
    assert "'order'" in outcome.errors[0] and "future" in outcome.errors[0]


# Catalogs: the committed one with `order` and `runs` selected, then one defect.

BASE_CATALOG = catalog_for(STREAMS)


def entry_of(catalog: dict, stream: str) -> dict:
    return next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)


@st.composite
def broken_catalogs(draw: st.DrawFn) -> tuple[t.Any, str, str]:
    catalog = copy.deepcopy(BASE_CATALOG)
    stream = draw(st.sampled_from(STREAMS))
    entry = entry_of(catalog, stream)
    root = next(m for m in entry["metadata"] if m["breadcrumb"] == [])
    defect = draw(st.sampled_from(["catalog", "streams", "entry", "id", "schema", "properties",
                                   "metadata", "breadcrumb", "selected", "unknown", "override",
                                   "duplicate"]))
    if defect == "catalog":
        return draw(NOT_A_DICT.filter(lambda v: v is not None) | st.just(b"null")), "exit 1", ""
    if defect == "streams":
        return {"streams": draw(NOT_A_DICT.filter(lambda v: not isinstance(v, list)))}, "exit 1", ""
    if defect == "entry":
        catalog["streams"].append(draw(NOT_A_DICT))
        return catalog, "exit 1", ""
    if defect == "id":
        entry["tap_stream_id"] = draw(NOT_A_DICT.filter(lambda v: not isinstance(v, str)))
        entry.pop("stream", None)
        return catalog, "exit 1", ""
    if defect == "schema":
        entry["schema"] = draw(NOT_A_DICT)
        return catalog, "exit 1", stream
    if defect == "properties":
        entry["schema"]["properties"] = draw(NOT_A_DICT)
        return catalog, "exit 1", stream
    if defect == "metadata":
        entry["metadata"] = draw(NOT_A_DICT.filter(lambda v: not isinstance(v, list)))
        return catalog, "exit 1", stream
    if defect == "breadcrumb":
        entry["metadata"][draw(st.integers(0, len(entry["metadata"]) - 1))]["breadcrumb"] = draw(
            NOT_A_DICT.filter(lambda v: not isinstance(v, list)))
        return catalog, "exit 1", stream
    if defect == "selected":
        root["metadata"]["selected"] = draw(st.sampled_from(["yes", "true", 1, 0, [], {}]))
        return catalog, "exit 1", stream
    if defect == "unknown":
        name = draw(st.sampled_from(["orders", "widget", "run", "Order", "zz"]))
        catalog["streams"].append({**copy.deepcopy(entry), "tap_stream_id": name,
                                   "stream": name})
        return catalog, "exit 0, warning", name
    if defect == "duplicate":
        catalog["streams"].append(copy.deepcopy(entry))
        return catalog, "exit 1", stream
    field = draw(st.sampled_from(["replication_key", "key_properties", "replication_method"]))
    entry[field] = {"replication_key": "name", "key_properties": ["name"],
                    "replication_method": "FULL_TABLE"}[field]
    return catalog, "exit 0, warning", stream


@fuzz(80)
@given(case=broken_catalogs())
def test_a_broken_catalog_ends_in_one_line_or_a_warning(case, server, tmp_path, tally: Tally):
    catalog, expected, stream = case
    outcome = run(server, tmp_path, catalog=catalog)
    if expected == "exit 1":
        assert outcome.code == 1, (json.dumps(catalog)[:300], outcome.log[-1500:])
        assert outcome.errors[0].startswith("tap-apixx: error: catalog:"), outcome.errors
        assert f"'{stream}'" in outcome.errors[0] if stream else True, outcome.errors
    else:
        assert outcome.code == 0, outcome.errors
        assert any(f"'{stream}'" in w for w in outcome.warnings), outcome.warnings
    tally.add(outcome.kind)

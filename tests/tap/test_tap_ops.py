"""The ops streams (flows, runs, connectors): paging, detail fields, the runs window, scopes, pacing."""

from __future__ import annotations

import io
import json
import math
import typing as t
from contextlib import redirect_stdout
from datetime import timedelta

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess
from tap_apixx.bookmarks import iso_ms, parse_ts
from tap_apixx.pacing import RatePacer
from tap_apixx.pagination import OPS_MAX_PAGE_SIZE, StartingAfterPaginator
from tap_apixx.tap import TapApixx
from tests.helpers.emulator import FAST_FLAGS
from tests.helpers.tap import catalog_for, config_for, parse_messages, run_cli, run_tap, truth

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

OPS = ("flows", "runs", "connectors")
DATA_ONLY_KEY = "apixx_acme_data_7b3e1f9a"  # built-in emulator key with data:read only
UNIT_CONFIG = {"api_key": DEFAULT_KEY, "api_url": "http://127.0.0.1:9/v1/"}


@pytest.fixture(scope="module")
def ops_emu() -> Iterator[EmulatorProcess]:
    """An emulator of our own whose ops history no other test changes (read-only tests)."""
    with EmulatorProcess(**{**FAST_FLAGS, "records_per_entity": 20}) as emu:
        yield emu


def ops_truth(emu: EmulatorProcess, kind: str) -> list[dict]:
    """Every flow, run or connector in API order and detail form."""
    return emu.control("GET", f"/_emulator/ops/{kind}", params={"tenant": "acme", "env": "live"})["data"]


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


def ops_requests(emu: EmulatorProcess, route: str) -> list[dict]:
    return [r for r in emu.stats()["requests"] if r["route"] == route]


def trigger(emu: EmulatorProcess, flow_id: str, status: str, seconds: float | None = None) -> dict:
    """Trigger a run of `flow_id` whose outcome is `status`; return the run as the API shows it."""
    wish = {"tenant": "acme", "env": "live", "flow_id": flow_id, "status": status, "duration_seconds": seconds}
    emu.control("POST", "/_emulator/ops/next-run", json=wish)
    answer = emu.http.post(f"{emu.api_url}/flows/{flow_id}/trigger", timeout=30,
                           headers={"Authorization": f"Bearer {DEFAULT_KEY}"})
    assert answer.status_code == 202, answer.text
    return emu.get(f"/v1/runs/{answer.json()['run_id']}").json()


def advance(emu: EmulatorProcess, seconds: int) -> None:
    emu.control("POST", "/_emulator/time/advance", json={"seconds": seconds})


def bookmark(state: dict) -> str:
    return state["bookmarks"]["runs"]["replication_key_value"]


def active_flows(emu: EmulatorProcess) -> list[str]:
    return [f["id"] for f in ops_truth(emu, "flows") if f["status"] == "active"]


# Unit: the paginator, parameters, the bookmark rule, one pacer


def response(items: list[dict], has_more: bool) -> requests.Response:
    resp = requests.Response()
    resp.status_code = 200
    resp._content = json.dumps({"data": items, "meta": {"total": 99, "has_more": has_more}}).encode()
    return resp


def test_starting_after_paginator_follows_last_id_until_has_more_is_false() -> None:
    paginator = StartingAfterPaginator()
    pages = [response([{"id": "a"}, {"id": "b"}], True), response([{"id": "c"}], False)]
    tokens = []
    for page in pages:
        tokens.append(paginator.current_value)
        paginator.advance(page)  # type: ignore[arg-type]
    assert tokens == [None, "b"]
    assert paginator.finished


def test_starting_after_paginator_stops_on_an_empty_page_claiming_more() -> None:
    paginator = StartingAfterPaginator()
    paginator.advance(response([], True))  # type: ignore[arg-type]
    assert paginator.finished


def test_ops_streams_use_api_url_flows_read_and_capped_pages() -> None:
    tap = TapApixx(config={**UNIT_CONFIG, "page_size": 1000})
    for name in OPS:
        stream = tap.streams[name]
        assert stream.get_url(None) == f"http://127.0.0.1:9/v1/{name}"
        assert stream.required_scope == "flows:read"
        assert stream.primary_keys == ("id",)
        assert stream.get_url_params(None, "x_1")["limit"] == OPS_MAX_PAGE_SIZE
        assert stream.get_url_params(None, "x_1")["starting_after"] == "x_1"
    assert tap.streams["order"].required_scope == "data:read"
    assert tap.streams["runs"].replication_key == "started_at"
    assert tap.streams["flows"].replication_key is None
    assert tap.streams["connectors"].replication_key is None
    assert TapApixx(config={**UNIT_CONFIG, "page_size": 7}).streams["runs"].page_limit == 7


def runs_state(value: str) -> dict:
    return {"bookmarks": {"runs": {"replication_key": "started_at", "replication_key_value": value}}}


@pytest.mark.parametrize(
    ("settings", "state", "expected"),
    [
        ({}, None, None),
        ({}, runs_state("2026-03-10T12:00:00Z"), "2026-03-09T12:00:00.000Z"),
        ({"runs_lookback_hours": 0}, runs_state("2026-03-10T12:00:00Z"), "2026-03-10T12:00:00.000Z"),
        ({"runs_lookback_hours": 2}, runs_state("2026-03-10T12:00:00Z"), "2026-03-10T10:00:00.000Z"),
        ({"start_date": "2026-03-10T00:00:00Z"}, runs_state("2026-03-10T12:00:00Z"), "2026-03-10T00:00:00.000Z"),
        ({"start_date": "2026-03-01T00:00:00Z"}, None, "2026-03-01T00:00:00.000Z"),
    ],
)
def test_runs_start_from_later_of_start_date_and_bookmark_minus_window(
    settings: dict, state: dict | None, expected: str | None
) -> None:
    stream = TapApixx(config={**UNIT_CONFIG, **settings}, state=state).streams["runs"]
    assert stream.get_url_params(None, None)["from"] == expected


def test_runs_bookmark_stops_at_the_first_run_still_open() -> None:
    stream = TapApixx(config=UNIT_CONFIG).streams["runs"]
    runs = [("2026-03-01T00:00:00Z", "succeeded"), ("2026-03-02T00:00:00Z", "running"),
            ("2026-03-03T00:00:00Z", "succeeded"), ("2026-03-04T00:00:00Z", "queued")]
    for started_at, status in runs:
        stream._increment_stream_state({"started_at": started_at, "status": status})
    assert stream.stream_state["replication_key_value"] == "2026-03-02T00:00:00Z"


def test_one_pacer_for_both_bases() -> None:
    tap = TapApixx(config=UNIT_CONFIG)
    assert all(tap.streams[name].pacer is tap.pacer for name in (*OPS, "order", "lead"))


def test_bad_runs_lookback_hours_fails_config() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TapApixx(config={**UNIT_CONFIG, "runs_lookback_hours": -1})
    assert info.value.errors == ["runs_lookback_hours: -1 is not an integer in 0..2160"]


# Against the emulator


def test_full_sync_equals_ground_truth(ops_emu: EmulatorProcess) -> None:
    before = {kind: by_id(ops_truth(ops_emu, kind)) for kind in OPS}
    result = run_tap(config_for(ops_emu), streams=OPS)
    after = {kind: by_id(ops_truth(ops_emu, kind)) for kind in OPS}
    for kind in OPS:
        records = result.records(kind)
        assert [r["id"] for r in records] == list(after[kind]), kind  # every id once, in API order
        for record in records:  # equal to the truth just before or just after (next_run_at moves)
            assert record in (before[kind].get(record["id"]), after[kind][record["id"]]), kind
    flows = result.records("flows")
    assert all(f["connectors"]["source"]["system"] == f["source"] for f in flows)
    assert all(isinstance(f["schedule_detail"]["interval_seconds"], int) for f in flows)
    runs = result.records("runs")
    assert any(r["errors"] for r in runs if r["status"] == "failed")
    assert any(r["errors"] for r in runs if r["status"] == "partial")
    assert bookmark(result.last_state) == max(r["started_at"] for r in after["runs"].values())


def test_runs_are_paged_at_100_with_starting_after(ops_emu: EmulatorProcess) -> None:
    ops_emu.clear_stats()
    result = run_tap(config_for(ops_emu), streams=["runs"])
    runs = ops_truth(ops_emu, "runs")
    expected = [r["id"] for r in runs]
    assert len(expected) > 3 * OPS_MAX_PAGE_SIZE
    assert [r["id"] for r in result.records("runs")] == expected
    pages = ops_requests(ops_emu, "ops:runs")
    assert len(pages) == math.ceil(len(expected) / OPS_MAX_PAGE_SIZE)
    assert all(p["params"]["limit"] == str(OPS_MAX_PAGE_SIZE) for p in pages)
    afters = [p["params"].get("starting_after") for p in pages]
    assert afters == [None, *expected[OPS_MAX_PAGE_SIZE - 1 :: OPS_MAX_PAGE_SIZE]][: len(pages)]
    # one detail request per failed or partial run (for its errors), none for the others
    with_errors = sorted(r["id"] for r in runs if r["status"] in ("failed", "partial"))
    assert sorted(detail_ids(ops_emu, "runs")) == with_errors


def detail_ids(emu: EmulatorProcess, kind: str) -> list[str]:
    return [r["path"].rsplit("/", 1)[1] for r in ops_requests(emu, f"ops:{kind}:{{id}}")]


def test_small_pages_and_one_detail_request_per_flow(ops_emu: EmulatorProcess) -> None:
    ops_emu.clear_stats()
    result = run_tap(config_for(ops_emu, page_size=2), streams=["flows", "connectors"])
    for kind in ("flows", "connectors"):
        expected = [r["id"] for r in ops_truth(ops_emu, kind)]
        assert len(expected) > 2
        assert [r["id"] for r in result.records(kind)] == expected
        afters = [p["params"].get("starting_after") for p in ops_requests(ops_emu, f"ops:{kind}")]
        assert afters == [None, *expected[1::2]][: math.ceil(len(expected) / 2)]
    assert sorted(detail_ids(ops_emu, "flows")) == sorted(r["id"] for r in ops_truth(ops_emu, "flows"))
    assert detail_ids(ops_emu, "connectors") == []


@pytest.mark.parametrize(("hours", "start_date_offset"), [(48, None), (24, timedelta(hours=-3))])
def test_next_sync_rereads_the_window_before_the_bookmark(
    ops_emu: EmulatorProcess, hours: int, start_date_offset: timedelta | None
) -> None:
    first = run_tap(config_for(ops_emu), streams=["runs"])
    mark = parse_ts(bookmark(first.last_state))
    settings: dict[str, t.Any] = {"runs_lookback_hours": hours}
    since = mark - timedelta(hours=hours)
    if start_date_offset is not None:  # a start_date later than bookmark - window wins
        since = mark + start_date_offset
        settings["start_date"] = iso_ms(since)
    ops_emu.clear_stats()
    second = run_tap(config_for(ops_emu, **settings), state=first.last_state, streams=["runs"])
    assert {p["params"].get("from") for p in ops_requests(ops_emu, "ops:runs")} == {iso_ms(since)}
    expected = [r["id"] for r in ops_truth(ops_emu, "runs") if parse_ts(r["started_at"]) >= since]
    assert 0 < len(expected) < len(first.records("runs"))
    assert [r["id"] for r in second.records("runs")] == expected
    assert bookmark(second.last_state) == bookmark(first.last_state)


def test_a_run_that_finishes_after_a_sync_is_updated_by_the_next(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=20)
    run = trigger(emu, active_flows(emu)[0], "failed")
    config = config_for(emu, runs_lookback_hours=0)
    first = run_tap(config, streams=["runs"])
    seen = by_id(first.records("runs"))[run["id"]]
    assert seen["status"] in ("queued", "running")
    assert (seen["finished_at"], seen["errors"]) == (None, [])
    advance(emu, 600)
    second = run_tap(config, state=first.last_state, streams=["runs"])
    final = by_id(ops_truth(emu, "runs"))[run["id"]]
    assert final["status"] == "failed" and final["errors"]
    assert by_id(second.records("runs"))[run["id"]] == final
    assert bookmark(second.last_state) == max(r["started_at"] for r in ops_truth(emu, "runs"))


def test_an_open_run_older_than_the_window_is_still_reread(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=20)
    slow_flow, fast_flow = active_flows(emu)[:2]
    slow = trigger(emu, slow_flow, "succeeded", seconds=7200)
    advance(emu, 600)
    fast = trigger(emu, fast_flow, "succeeded", seconds=30)
    advance(emu, 300)
    assert slow["started_at"] < fast["started_at"]  # a 0-hour window from `fast` misses `slow`
    config = config_for(emu, runs_lookback_hours=0)
    first = run_tap(config, streams=["runs"])
    assert [by_id(first.records("runs"))[r["id"]]["status"] for r in (slow, fast)] == ["running", "succeeded"]
    assert bookmark(first.last_state) == slow["started_at"]  # held back at the open run
    advance(emu, 7200)
    second = run_tap(config, state=first.last_state, streams=["runs"])
    assert by_id(second.records("runs"))[slow["id"]] == by_id(ops_truth(emu, "runs"))[slow["id"]]
    assert by_id(second.records("runs"))[slow["id"]]["status"] == "succeeded"
    assert bookmark(second.last_state) == fast["started_at"]


def test_data_only_key_fails_ops_streams_naming_flows_read(ops_emu: EmulatorProcess, tmp_path: Path) -> None:
    config = {**config_for(ops_emu), "api_key": DATA_ONLY_KEY}
    for name in OPS:
        proc = run_cli(tmp_path, config, streams=[name])
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert lines[-1].startswith(f"tap-apixx: error: {name}: HTTP 403 forbidden: ")
        assert "'flows:read' scope" in lines[-1]
        assert "request_id=req_" in lines[-1]
        assert DATA_ONLY_KEY not in proc.stderr + proc.stdout


def test_data_only_key_syncs_the_canonical_streams_alone(ops_emu: EmulatorProcess, tmp_path: Path) -> None:
    proc = run_cli(tmp_path, {**config_for(ops_emu), "api_key": DATA_ONLY_KEY}, streams=["order"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [m["record"] for m in parse_messages(proc.stdout) if m["type"] == "RECORD"]
    assert {r["canonical_id"]: r["updated_at"] for r in records} == truth(ops_emu, "order")


class CountingPacer(RatePacer):
    def __init__(self) -> None:
        super().__init__(None)
        self.acquired = 0

    def acquire(self) -> float:
        self.acquired += 1
        return super().acquire()


def test_requests_to_both_bases_draw_on_one_budget(ops_emu: EmulatorProcess) -> None:
    tap = TapApixx(config=config_for(ops_emu, page_size=50), catalog=catalog_for(["order", "connectors", "runs"]))
    pacer = tap.__dict__["pacer"] = CountingPacer()  # the tap-wide pacer (a cached_property)
    ops_emu.clear_stats()
    with redirect_stdout(io.StringIO()):
        tap.sync_all()
    routes = ops_emu.stats()["by_route"]
    data = sum(n for route, n in routes.items() if route.startswith("data:"))
    ops = sum(n for route, n in routes.items() if route.startswith("ops:"))
    assert data > 0 and ops > 0
    assert pacer.acquired == data + ops

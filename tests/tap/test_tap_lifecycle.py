"""end_date windows, rewind and new_fields, run against the emulator and checked with its ground truth."""

from __future__ import annotations

import json
import typing as t

import pytest

from tap_apixx.window import parse_instant
from tests.helpers.tap import config_for, latest, run_cli, run_tap, truth

if t.TYPE_CHECKING:
    from pathlib import Path

STREAMS = ["order", "invoice", "runs"]


def middle(emu, entity: str) -> str:
    """An instant in the middle of the entity's history (between two records)."""
    stamps = sorted(r["updated_at"] for r in emu.ground_truth(entity))
    return stamps[len(stamps) // 2]


def truth_between(emu, entity: str, start: str | None, end: str | None) -> dict[str, str]:
    low = parse_instant(start) if start else None
    high = parse_instant(end) if end else None
    return {cid: ts for cid, ts in truth(emu, entity).items()
            if (low is None or parse_instant(ts) >= low) and (high is None or parse_instant(ts) < high)}


def runs_truth(emu) -> list[dict]:
    return emu.control("GET", "/_emulator/ops/runs", params={"tenant": "acme", "env": "live"})["data"]


# -- end_date ----------------------------------------------------------------------------------

def test_a_window_syncs_exactly_its_records_and_its_state_says_so(emulator):
    start, end = "2025-10-01T00:00:00Z", middle(emulator, "order")
    result = run_tap(config_for(emulator, page_size=25, start_date=start, end_date=end), streams=STREAMS)
    for entity in ("order", "invoice"):
        assert latest(result.records(entity)) == truth_between(emulator, entity, start, end), entity
        state = result.last_state["bookmarks"][entity]
        assert parse_instant(state["replication_key_value"]) < parse_instant(end)
        assert state["window"] == {"start": "2025-10-01T00:00:00.000Z", "end": end, "complete": True}
    runs = result.records("runs")
    expected = {r["id"] for r in runs_truth(emulator)
                if parse_instant(start) <= parse_instant(r["started_at"]) < parse_instant(end)}
    assert {r["id"] for r in runs} == expected
    assert result.last_state["bookmarks"]["runs"]["window"]["complete"] is True


def test_two_windows_then_a_normal_run_cover_everything_once(emulator):
    mid = middle(emulator, "invoice")
    config = config_for(emulator, page_size=30)
    first = run_tap({**config, "end_date": mid}, streams=["invoice"])
    second = run_tap({**config, "start_date": mid, "end_date": "2099-01-01T00:00:00Z"}, streams=["invoice"])
    union = first.ids("invoice") + second.ids("invoice")
    assert sorted(union) == sorted(truth(emulator, "invoice")), "a gap or an overlap between windows"
    # the first window's state, taken over by a normal run, reads on from its bookmark: no gap
    normal = run_tap(config, state=first.last_state, streams=["invoice"])
    assert set(first.ids("invoice")) | set(normal.ids("invoice")) == set(truth(emulator, "invoice"))
    assert not set(first.ids("invoice")) & set(normal.ids("invoice"))
    assert normal.last_state["bookmarks"]["invoice"]["window"] is None


def test_a_window_state_that_would_leave_a_gap_is_refused_in_one_line(emulator, tmp_path: Path):
    mid = middle(emulator, "order")
    window = run_tap(config_for(emulator, start_date=mid, end_date="2099-01-01T00:00:00Z"), streams=["order"])
    (tmp_path / "state.json").write_text(json.dumps(window.last_state))
    proc = run_cli(tmp_path, config_for(emulator), "--state", str(tmp_path / "state.json"), streams=["order"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("tap-apixx: error: order: the state is that of the window") and "unsynced" in line
    assert '"type":"RECORD"' not in proc.stdout.replace(" ", "")


def test_a_windowed_run_refuses_a_normal_state(emulator, tmp_path: Path):
    normal = run_tap(config_for(emulator), streams=["order"])
    (tmp_path / "state.json").write_text(json.dumps(normal.last_state))
    proc = run_cli(tmp_path, config_for(emulator, end_date="2026-01-01T00:00:00Z"), "--state",
                   str(tmp_path / "state.json"), streams=["order"])
    assert proc.returncode == 1
    assert "normal incremental bookmark" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("settings", "why"), [
    ({"end_date": "soon"}, "end_date: 'soon' is not an RFC 3339 timestamp"),
    ({"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, "is not after start_date"),
    ({"new_fields": "keep"}, "new_fields: 'keep' is not one of warn, load, fail"),
    ({"rewind": [{"stream": "orders", "to": "start", "id": "T-1"}]}, "rewind: unknown stream 'orders'"),
])
def test_bad_lifecycle_settings_are_one_line_each(emulator, tmp_path: Path, settings: dict, why: str):
    proc = run_cli(tmp_path, config_for(emulator, **settings), streams=["order"])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len([x for x in lines if x.startswith("tap-apixx: error:")]) == 1
    assert why in lines[-1]


# -- rewind ------------------------------------------------------------------------------------

def test_rewind_resyncs_one_stream_once_and_leaves_the_others(emulator):
    config, streams = config_for(emulator, page_size=50), ["order", "invoice", "payment"]
    first = run_tap(config, streams=streams)
    before = first.last_state["bookmarks"]
    rewind = {**config, "rewind": [{"stream": "order", "to": "start", "id": "TICKET-1"}]}
    second = run_tap(rewind, state=first.last_state, streams=streams)
    assert latest(second.records("order")) == truth(emulator, "order")  # all of it again
    assert second.records("invoice") == second.records("payment") == []
    after = second.last_state["bookmarks"]
    assert after["order"]["rewinds_applied"] == ["TICKET-1"]
    for entity in ("invoice", "payment"):
        assert after[entity] == before[entity]
    third = run_tap(rewind, state=second.last_state, streams=streams)  # the setting stays: no-op
    assert third.records("order") == []


def test_rewind_to_an_instant_resyncs_from_there(emulator):
    config = config_for(emulator)
    first = run_tap(config, streams=["order"])
    mid = middle(emulator, "order")
    second = run_tap({**config, "rewind": [{"stream": "order", "to": mid, "id": "r2"}]},
                     state=first.last_state, streams=["order"])
    assert latest(second.records("order")) == truth_between(emulator, "order", mid, None)


# -- new_fields --------------------------------------------------------------------------------

@pytest.fixture()
def drifted(emulator_factory):
    """An emulator where some orders gained fields the tap's schema does not have."""
    emu = emulator_factory(records_per_entity=60)
    emu.churn("order", updates=4, inserts=2,
              set={"loyalty_tier": "gold", "loyalty_points": 12, "tags": ["vip"], "mixed": 1})
    emu.churn("order", updates=2, set={"mixed": "one"})
    return emu


def test_new_fields_warn_drops_them(drifted):
    result = run_tap(config_for(drifted), streams=["order"])
    assert not any("loyalty_tier" in r for r in result.records("order"))


def test_new_fields_fail_stops_with_one_line_naming_the_field(drifted, tmp_path: Path):
    proc = run_cli(tmp_path, config_for(drifted, new_fields="fail"), streams=["order"])
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("tap-apixx: error: order: the API sent field 'loyalty_points'")
    assert "new_fields" in line


def test_new_fields_load_announces_typed_columns_before_the_records(drifted):
    result = run_tap(config_for(drifted, new_fields="load", page_size=1000), streams=["order"])
    schemas = [m for m in result.messages if m["type"] == "SCHEMA" and m["stream"] == "order"]
    props = schemas[-1]["schema"]["properties"]
    assert props["loyalty_tier"]["type"] == ["string", "null"]
    assert props["loyalty_points"]["type"] == ["integer", "null"]
    assert props["tags"]["type"] == ["array", "null"]
    assert props["mixed"]["type"] == ["string", "null"]  # 1 and "one": JSON text
    first_with = next(i for i, m in enumerate(result.messages) if m["type"] == "RECORD" and "loyalty_tier" in m["record"])
    assert result.messages.index(schemas[-1]) < first_with
    gold = {cid for cid, r in {r["canonical_id"]: r for r in drifted.ground_truth("order")}.items()
            if r.get("loyalty_tier") == "gold"}
    loaded = {r["canonical_id"]: r for r in result.records("order")}
    assert {cid for cid, r in loaded.items() if r.get("loyalty_tier") == "gold"} == gold
    assert {r["mixed"] for r in loaded.values() if r.get("mixed") is not None} == {"1", '"one"'}
    state = result.last_state["bookmarks"]["order"]["new_fields"]
    assert set(state) == {"loyalty_tier", "loyalty_points", "tags", "mixed"}
    # the next run declares them from its first SCHEMA, though no new record carries them
    again = run_tap(config_for(drifted, new_fields="load"), state=result.last_state, streams=["order"])
    first_schema = next(m for m in again.messages if m["type"] == "SCHEMA" and m["stream"] == "order")
    assert {"loyalty_tier", "mixed"} <= set(first_schema["schema"]["properties"])

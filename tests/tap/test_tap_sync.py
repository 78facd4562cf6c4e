"""Sync correctness against the emulator: completeness, ties, incremental runs, resume, fields."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from tap_apixx.bookmarks import iso_ms, parse_ts
from tap_apixx.pagination import MAX_PAGE_SIZE
from tap_apixx.streams import CANONICAL_ENTITIES
from tests.helpers.tap import (
    TAP,
    catalog_for,
    config_for,
    latest,
    list_requests,
    parse_messages,
    run_tap,
    tie_sizes,
    truth,
)


def test_full_sync_of_all_streams_equals_ground_truth(emulator) -> None:
    result = run_tap(config_for(emulator, page_size=100))
    for entity in CANONICAL_ENTITIES:
        ids = result.ids(entity)
        assert len(ids) == len(set(ids)), f"{entity}: duplicates within one run"
        assert latest(result.records(entity)) == truth(emulator, entity), entity
    assert "progress_markers" not in json.dumps(result.last_state)


@pytest.mark.parametrize("cursor_mode", ["exclusive", "inclusive"])
def test_tie_groups_straddling_pages_lose_nothing(emulator_factory, cursor_mode: str) -> None:
    emu = emulator_factory(cursor_mode=cursor_mode)
    emu.churn("order", updates=10, inserts=15, tie=True)  # one more tie group of 25
    emu.clear_stats()
    result = run_tap(config_for(emu, page_size=7), streams=["order", "payment"])
    for entity in ("order", "payment"):
        expected = truth(emu, entity)
        assert tie_sizes(emu.ground_truth(entity))[0] > 7
        assert latest(result.records(entity)) == expected
        assert len(result.ids(entity)) == len(expected)
    # a tie group larger than page_size is read whole with one widened request
    assert any(r["params"].get("limit") == str(MAX_PAGE_SIZE) for r in list_requests(emu, "order"))


def test_tie_group_larger_than_api_maximum_fails_clearly(emulator_factory, tmp_path: Path) -> None:
    emu = emulator_factory(records_per_entity=50)
    stamp = emu.churn("refund", inserts=MAX_PAGE_SIZE + 5, tie=True)["updated_at"][0]
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config_for(emu, page_size=100)))
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog_for(["refund"])))
    proc = subprocess.run([TAP, "--config", str(config_file), "--catalog", str(catalog_file)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("tap-apixx: error: refund: at least 1000 records share updated_at")
    assert stamp in last_line
    assert "request_id=req_" in last_line
    assert "Traceback" not in proc.stderr
    emitted = {m["record"]["canonical_id"] for m in parse_messages(proc.stdout) if m["type"] == "RECORD"}
    before = {r["canonical_id"] for r in emu.ground_truth("refund") if r["updated_at"] < stamp}
    assert before <= emitted  # everything up to the giant group was delivered
    assert len(emitted - before) < MAX_PAGE_SIZE  # and the group itself was not "completed"


def test_incremental_runs_emit_exactly_the_changes(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=120)
    config, streams = config_for(emu, page_size=25), ["order"]
    first = run_tap(config, streams=streams)
    assert latest(first.records("order")) == truth(emu, "order")

    assert run_tap(config, first.last_state, streams).ids("order") == []  # no changes, no records

    tied = emu.churn("order", updates=4, inserts=4, tie=True)  # the bookmark lands on a tie
    second = run_tap(config, first.last_state, streams)
    assert sorted(second.ids("order")) == sorted(tied["updated"] + tied["inserted"])
    # records already emitted at the bookmark's instant are not emitted again
    assert run_tap(config, second.last_state, streams).ids("order") == []

    churn = emu.churn("order", updates=6, inserts=2)
    third = run_tap(config, second.last_state, streams)
    assert sorted(third.ids("order")) == sorted(churn["updated"] + churn["inserted"])
    assert latest(first.records("order") + second.records("order") + third.records("order")) == \
        truth(emu, "order")


def test_lookback_rereads_only_the_window(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=60)
    emu.churn("invoice", updates=3, inserts=3)  # six records within a few ms of the end
    config, streams = config_for(emu, lookback_minutes=5), ["invoice"]
    first = run_tap(config, streams=streams)
    bookmark = first.last_state["bookmarks"]["invoice"]["replication_key_value"]
    since = iso_ms(parse_ts(bookmark) - timedelta(minutes=5))
    window = {r["canonical_id"] for r in emu.ground_truth("invoice")
              if since <= r["updated_at"] < bookmark}
    again = run_tap(config, first.last_state, streams)
    assert len(window) >= 5
    assert set(again.ids("invoice")) == window


def test_resume_from_any_state_message_loses_nothing(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=200)  # under 300: no bulk-import tie groups
    emu.churn("payment", updates=5, inserts=10, tie=True)  # but one tie group over a page
    config, streams = config_for(emu, page_size=20), ["payment"]
    full = run_tap(config, streams=streams)
    expected = truth(emu, "payment")
    positions = [i for i, m in enumerate(full.messages) if m["type"] == "STATE"]
    records_so_far = 0
    assert len(positions) >= len(expected) // 20  # at least one STATE per page
    for position in positions:
        before = [m["record"] for m in full.messages[:position] if m["type"] == "RECORD"]
        assert len(before) >= records_so_far
        records_so_far = len(before)
        resumed = run_tap(config, full.messages[position]["value"], streams)
        assert latest(before + resumed.records("payment")) == expected, f"cut at {position}"


def test_killed_process_resumes_from_its_last_state(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=200)
    emu.faults(latency_ms=15)
    config = config_for(emu, page_size=10)
    catalog = catalog_for(["order"])
    before: list[dict] = []
    state: dict | None = None
    with _popen_tap(config, catalog) as proc:
        for line in proc.stdout:
            message = json.loads(line)
            if message["type"] == "RECORD":
                before.append(message["record"])
            elif message["type"] == "STATE":
                state = message["value"]
            if len(before) >= 60:
                proc.kill()
                break
    emu.faults()
    assert state is not None
    resumed = run_tap(config, state, ["order"])
    assert latest(before + resumed.records("order")) == truth(emu, "order")


class _popen_tap:
    def __init__(self, config: dict, catalog: dict) -> None:
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        cfg, cat = f"{self.dir.name}/config.json", f"{self.dir.name}/catalog.json"
        with open(cfg, "w") as f:
            json.dump(config, f)
        with open(cat, "w") as f:
            json.dump(catalog, f)
        self.argv = [TAP, "--config", cfg, "--catalog", cat]

    def __enter__(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        return self.proc

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.dir.cleanup()


def test_deselected_fields_are_not_requested(emulator) -> None:
    emulator.clear_stats()
    config = config_for(emulator, semantics_probe=False)  # the probe asks for updated_at only
    result = run_tap(config, streams=["order", "lead"],
                     deselect={"order": ["status", "currency", "canonical_id"]})
    order_requests = list_requests(emulator, "order")
    assert order_requests
    for request in order_requests:
        fields = request["params"]["fields"].split(",")
        assert {"canonical_id", "updated_at", "total_cents"} <= set(fields)
        assert not {"status", "currency"} & set(fields)
    assert all("fields" not in r["params"] for r in list_requests(emulator, "lead"))
    assert all("status" not in r and "canonical_id" in r for r in result.records("order"))
    assert latest(result.records("order")) == truth(emulator, "order")


def test_new_fields_never_break_a_sync_and_warn_once(emulator_factory, caplog) -> None:
    emu = emulator_factory(records_per_entity=80)
    emu.churn("order", updates=30, set={"loyalty_tier": "gold", "channel": None})
    emu.churn("lead", updates=5, set={"loyalty_tier": "silver"})
    with caplog.at_level(logging.WARNING):
        result = run_tap(config_for(emu, page_size=10), streams=["order", "lead"])
    assert latest(result.records("order")) == truth(emu, "order")
    assert all("loyalty_tier" not in r for r in result.records("order"))
    warnings = [r.getMessage() for r in caplog.records if "unknown to the schema" in r.getMessage()]
    template = ("Stream '{}': the API sent field '{}', unknown to the schema; ignoring it "
                "(update the tap to sync it).")
    expected = [("order", "loyalty_tier"), ("order", "channel"), ("lead", "loyalty_tier")]
    assert sorted(warnings) == sorted(template.format(*pair) for pair in expected)


STATE_FIXTURE = Path(__file__).parent / "fixtures" / "state_b652a2c.json"


@pytest.mark.parametrize("since_mode", ["inclusive", "exclusive"])
def test_state_written_before_the_paging_change_resumes_exactly(emulator_factory, since_mode) -> None:
    """STATE from the tap as it was at b652a2c (tests/tap/fixtures) resumes with this version."""
    fixture = json.loads(STATE_FIXTURE.read_text())
    # the emulator's data as it was then: a year from 2025-07-01 (history now ends today)
    emu = emulator_factory(**fixture["generated_by"]["emulator"], history_start="2025-07-01", history_days=365,
                           since_mode=since_mode)
    config = config_for(emu, page_size=fixture["generated_by"]["page_size"])
    streams = fixture["generated_by"]["streams"]

    mid = fixture["mid_tie_group"]["bookmarks"]["order"]
    bookmark, seen = mid["replication_key_value"], set(mid["seen_at_bookmark"]["ids"])
    resumed = run_tap(config, fixture["mid_tie_group"], ["order"])
    expected = {r["canonical_id"] for r in emu.ground_truth("order")
                if r["updated_at"] > bookmark or (r["updated_at"] == bookmark and r["canonical_id"] not in seen)}
    assert 0 < len(seen) < tie_sizes(emu.ground_truth("order"))[0]  # cut inside the big tie group
    assert sorted(resumed.ids("order")) == sorted(expected)

    assert run_tap(config, fixture["final"], streams).messages[-1]["type"] == "STATE"
    assert run_tap(config, fixture["final"], streams).ids("order") == []
    tied = emu.churn("order", updates=3, inserts=3, tie=True)
    after = run_tap(config, fixture["final"], streams)
    assert sorted(after.ids("order")) == sorted(tied["updated"] + tied["inserted"])
    assert after.ids("payment") == []

"""reconcile against the emulator: the sweep is the tap's (pacer, retries, tie-safe paging), and
the report equals what the ground truth implies, on DuckDB files written here (no Meltano)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tap_apixx.reconcile.run import Actions, Reconcile
from tap_apixx.reconcile.sweep import IdSweepStream, SweepRun
from tap_apixx.reconcile.targets import WarehouseSpec
from tap_apixx.tap import TapApixx

duckdb = pytest.importorskip("duckdb")
CLI = Path(sys.executable).parent / "tap-apixx-reconcile"


def tap_for(emu, **config) -> TapApixx:
    return TapApixx(config={"api_key": emu_key(), "data_url": emu.data_url, "api_url": emu.api_url,
                            **config})


def emu_key() -> str:
    from apixx_emulator.testing import DEFAULT_KEY

    return DEFAULT_KEY


def warehouse_from_truth(emu, path: Path, entities: list[str]) -> dict[str, dict[str, str]]:
    """A DuckDB file as target-duckdb loads it (ids and updated_at), from the ground truth."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS apixx")
    loaded = {}
    for entity in entities:
        truth = {r["canonical_id"]: r["updated_at"] for r in emu.ground_truth(entity)}
        con.execute(f'CREATE TABLE apixx."{entity}" (canonical_id VARCHAR, updated_at TIMESTAMP, note VARCHAR)')
        con.execute(f'INSERT INTO apixx."{entity}" SELECT unnest(?), CAST(unnest(?) AS TIMESTAMP), NULL',
                    [list(truth), [ts.rstrip("Z") for ts in truth.values()]])
        loaded[entity] = truth
    con.close()
    return loaded


def run_reconcile(emu, path: Path, entities: list[str], **actions) -> object:
    spec = WarehouseSpec("duckdb", str(path), "apixx", "target-duckdb")
    return Reconcile(tap_for(emu), spec, entities, Actions(**actions)).run()


def cli(emu, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_APIXX", "MELTANO"))}
    env.update({"TAP_APIXX_API_KEY": key or emu_key(), "TAP_APIXX_DATA_URL": emu.data_url,
                "TAP_APIXX_API_URL": emu.api_url})
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("cursor_mode", ["exclusive", "inclusive"])
def test_the_sweep_finds_every_id_across_tied_page_boundaries(emulator_factory, cursor_mode):
    emu = emulator_factory(records_for=["customer=2600"], cursor_mode=cursor_mode)
    emu.churn("customer", updates=900, tie=True)  # one instant shared by 900 records
    emu.clear_stats()
    sweep = SweepRun(tap_for(emu), ["customer"], {"customer": None}).run()["customer"]
    truth = {r["canonical_id"]: r["updated_at"] for r in emu.ground_truth("customer")}
    assert set(sweep.ids) == set(truth)
    requests = [r for r in emu.stats()["requests"] if r["route"] == "data:customer:list"]
    assert {(r["params"]["limit"], r["params"]["fields"]) for r in requests} == {("1000", "canonical_id,updated_at")}
    assert sweep.requests == len(requests) >= 3


def test_the_sweep_keeps_to_the_rate_budget_and_retries_faults(emulator_factory, monkeypatch):
    emu = emulator_factory(read_limit=8, rate_window_seconds=2)
    emu.faults(error_500_rate=0.2, html_502_rate=0.1, seed=3)
    monkeypatch.setattr(IdSweepStream, "backoff_base_seconds", 0.01)  # the policy, not its waits
    sweeps = SweepRun(tap_for(emu), ["customer", "order", "invoice", "lead"], {}).run()
    emu.faults()
    for entity, sweep in sweeps.items():
        assert set(sweep.ids) == {r["canonical_id"] for r in emu.ground_truth(entity)}
    statuses = emu.stats()["by_status"]
    assert "429" not in statuses, statuses  # paced from the headers: the budget was never overrun
    assert sum(s.retries for s in sweeps.values()) >= 1  # the injected faults were retried


def test_a_clean_warehouse_reports_no_drift(emulator, tmp_path):
    path = tmp_path / "w.duckdb"
    warehouse_from_truth(emulator, path, ["order", "invoice"])
    outcome = run_reconcile(emulator, path, ["order", "invoice"])
    assert outcome.remaining_drift == 0
    assert outcome.requests == 2 and outcome.entities["order"].in_api == len(emulator.ground_truth("order"))


def test_damage_is_reported_exactly_and_no_clean_row_is(emulator, tmp_path):
    path = tmp_path / "w.duckdb"
    loaded = warehouse_from_truth(emulator, path, ["payment"])["payment"]
    removed, staled, *_ = sorted(loaded)
    foreign = "00000000-0000-4000-8000-0000000000ff"
    con = duckdb.connect(str(path))
    con.execute('DELETE FROM apixx."payment" WHERE canonical_id = ?', [removed])
    con.execute('UPDATE apixx."payment" SET updated_at = updated_at - INTERVAL 1 SECOND WHERE canonical_id = ?', [staled])
    con.execute('INSERT INTO apixx."payment" VALUES (?, TIMESTAMP \'2025-01-01\', NULL)', [foreign])
    con.close()
    drift = run_reconcile(emulator, path, ["payment"]).entities["payment"]
    assert drift.gone == [foreign]
    assert list(drift.missing) == [removed]
    assert list(drift.stale) == [staled]
    assert not drift.ahead and not drift.revived and drift.changed_during_sweep == 0


def test_changes_during_the_sweep_are_not_drift(emulator_factory, tmp_path, monkeypatch):
    emu = emulator_factory(records_for=["customer=2500"])
    path = tmp_path / "w.duckdb"
    warehouse_from_truth(emu, path, ["customer"])
    churned = {}
    send = IdSweepStream.send

    def send_then_churn(self, prepared, context):  # after the first page, the API moves on
        response = send(self, prepared, context)
        if not churned:
            churned.update(emu.churn("customer", updates=30, inserts=12))
        return response

    monkeypatch.setattr(IdSweepStream, "send", send_then_churn)
    outcome = run_reconcile(emu, path, ["customer"])
    drift = outcome.entities["customer"]
    assert churned and drift.drift == 0, (drift.stale, drift.missing)
    # the sweep saw the churned records at their new updated_at, after it began: left out
    assert drift.changed_during_sweep == 30 + 12


def test_mark_deleted_marks_only_rows_gone_from_the_api(emulator, tmp_path):
    path = tmp_path / "w.duckdb"
    loaded = warehouse_from_truth(emulator, path, ["refund", "inventory"])["refund"]
    gone = ["00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000a2"]
    con = duckdb.connect(str(path))
    for cid in gone:
        con.execute('INSERT INTO apixx."refund" VALUES (?, TIMESTAMP \'2025-01-01\', NULL)', [cid])
    con.close()
    outcome = run_reconcile(emulator, path, ["refund", "inventory"], mark_deleted=True)
    assert outcome.acted["refund"] == {"marked": 2, "unmarked": 0, "deleted": 0}
    assert outcome.acted["inventory"] == {"marked": 0, "unmarked": 0, "deleted": 0}
    assert outcome.confirm_requests == 2 and outcome.remaining_drift == 0
    con = duckdb.connect(str(path), read_only=True)
    live = {r[0] for r in con.execute('SELECT canonical_id FROM apixx."refund" WHERE _sdc_deleted_at IS NULL').fetchall()}
    # every reconciled table gets the column, so that analysts can filter any table the same way
    untouched = con.execute('SELECT count(*) FROM apixx."inventory" WHERE _sdc_deleted_at IS NULL').fetchone()[0]
    con.close()
    assert live == set(loaded) and untouched == len(emulator.ground_truth("inventory"))
    again = run_reconcile(emulator, path, ["refund"])
    assert again.remaining_drift == 0 and again.entities["refund"].marked == 2


def test_a_row_the_sweep_missed_but_get_finds_is_never_touched(emulator, tmp_path, monkeypatch):
    path = tmp_path / "w.duckdb"
    loaded = warehouse_from_truth(emulator, path, ["shipment"])["shipment"]
    hidden = min(loaded)
    sweep = IdSweepStream.sweep

    def sweep_missing_one(self):  # a sweep that lost a record: the confirmation must catch it
        result = sweep(self)
        result.ids.pop(hidden, None)
        return result

    monkeypatch.setattr(IdSweepStream, "sweep", sweep_missing_one)
    outcome = run_reconcile(emulator, path, ["shipment"], hard_delete=True)
    assert outcome.still_in_api == {"shipment": [hidden]}
    assert "shipment" not in outcome.acted and outcome.remaining_drift == 1
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute('SELECT count(*) FROM apixx."shipment" WHERE canonical_id = ?', [hidden]).fetchone() == (1,)
    con.close()


def test_the_command_line_exit_codes_json_and_one_line_errors(emulator, tmp_path):
    path = tmp_path / "w.duckdb"
    warehouse_from_truth(emulator, path, ["lead"])
    clean = cli(emulator, "--duckdb", str(path), "--entities", "lead")
    assert clean.returncode == 0, clean.stderr
    assert "No drift" in clean.stdout
    assert re.search(r"Cost: \d+ requests? in", clean.stdout), clean.stdout  # one page is "1 request"
    con = duckdb.connect(str(path))
    con.execute('DELETE FROM apixx."lead" WHERE canonical_id IN (SELECT canonical_id FROM apixx."lead" LIMIT 3)')
    con.close()
    drifted = cli(emulator, "--duckdb", str(path), "--entities", "lead", "--json")
    assert drifted.returncode == 1
    body = json.loads(drifted.stdout)
    assert body["entities"]["lead"]["missing"] == 3 and "TAP_APIXX_START_DATE=" in body["entities"]["lead"]["resync"]["command"]
    wrong_key = "apx_live_acme_wrongwrongwrong"
    failed = cli(emulator, "--duckdb", str(path), "--entities", "lead", key=wrong_key)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("tap-apixx-reconcile: error: lead: HTTP 401")
    assert "request_id=" in failed.stderr and wrong_key not in failed.stderr + failed.stdout
    assert "Traceback" not in failed.stderr
    missing = cli(emulator, "--duckdb", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 2 and "no DuckDB file" in missing.stderr and "Traceback" not in missing.stderr

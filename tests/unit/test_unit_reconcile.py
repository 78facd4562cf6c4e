"""reconcile without Meltano: the comparison, selection, settings, report and the DuckDB side."""

from __future__ import annotations

import json
import shutil

import pytest

from tap_apixx.reconcile import report
from tap_apixx.reconcile.cli import catalog_selection, choose_entities, select_matches
from tap_apixx.reconcile.compare import compare
from tap_apixx.reconcile.errors import ReconcileError
from tap_apixx.reconcile.run import Actions, Outcome
from tap_apixx.reconcile.sweep import Sweep, from_us, to_us
from tap_apixx.reconcile.targets import from_loader_settings, postgres_url_of, resolve
from tap_apixx.reconcile.warehouse import DuckDBWarehouse, duckdb_file_version, redact_url
from tap_apixx.streams import CANONICAL_ENTITIES

duckdb = pytest.importorskip("duckdb")

T0 = to_us("2026-01-01T00:00:00.000Z")
CUTOFF = T0 + 3_600_000_000  # the sweep began an hour after T0
A, B, C, D, E = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 6))


def test_timestamps_compare_as_instants_whatever_their_spelling():
    assert to_us("2026-01-01T00:00:00.123Z") == to_us("2026-01-01T00:00:00.123000+00:00")
    assert to_us("2026-01-01T01:00:00+01:00") == T0
    assert from_us(to_us("2026-05-06T07:08:09.010Z")) == "2026-05-06T07:08:09.010Z"
    assert from_us(T0 + 7) == "2026-01-01T00:00:00.000007Z"


def test_compare_tells_gone_missing_and_stale_apart():
    api = {A: T0, B: T0 + 10, D: T0 + 5}
    rows = {A: (T0, False), B: (T0, False), C: (T0, False)}
    drift = compare("customer", api, rows, CUTOFF)
    assert drift.gone == [C]
    assert drift.missing == {D: T0 + 5}
    assert drift.stale == {B: (T0, T0 + 10)}
    assert (drift.in_api, drift.in_warehouse, drift.drift) == (3, 3, 3)
    assert drift.resync_from_us == T0 + 5


def test_compare_leaves_out_what_changed_while_the_sweep_ran():
    api = {A: CUTOFF, B: CUTOFF + 5, D: CUTOFF + 1}  # A, B updated and D inserted during the sweep
    rows = {A: (T0, False), B: (T0, False), C: (CUTOFF + 2, False)}  # C loaded by a sync meanwhile
    drift = compare("customer", api, rows, CUTOFF)
    assert drift.drift == 0 and drift.changed_during_sweep == 4


def test_compare_counts_marked_rows_apart_and_flags_revived_ones():
    api = {A: T0}
    rows = {A: (T0, True), C: (T0, True)}
    drift = compare("customer", api, rows, CUTOFF)
    assert drift.gone == [] and drift.marked == 1  # C: gone and already marked, as it should be
    assert drift.revived == [A] and drift.drift == 1


def test_records_before_start_date_are_not_missing():
    drift = compare("customer", {A: T0, B: T0 + 100}, {}, CUTOFF, start_us=T0 + 50)
    assert drift.missing == {B: T0 + 100} and drift.before_start == 1
    assert drift.table_missing is False
    assert compare("customer", {}, None, CUTOFF).table_missing is True


def test_records_at_or_after_end_date_are_neither_missing_nor_stale():
    api = {A: T0 + 100, B: T0 + 200, D: T0 + 50}
    rows = {A: (T0, False), B: (T0, False)}  # a window job: A and B changed after its end
    drift = compare("customer", api, rows, CUTOFF, start_us=None, end_us=T0 + 100)
    assert drift.drift == 1 and drift.missing == {D: T0 + 50}  # D is inside the window
    assert drift.after_end == 2


def test_a_warehouse_row_newer_than_the_api_is_drift_too():
    drift = compare("customer", {A: T0}, {A: (T0 + 1, False)}, CUTOFF)
    assert drift.ahead == {A: (T0 + 1, T0)} and drift.drift == 1


def test_meltano_select_rules_at_the_entity_level():
    assert select_matches("customer", '["*.*"]')
    assert select_matches("customer", '["customer.*", "order.id"]')
    assert not select_matches("invoice", '["customer.*", "order.id"]')
    assert not select_matches("customer", '["*.*", "!customer.*"]')
    assert select_matches("customer", '["*.*", "!customer.email"]')  # one field out: still synced
    assert choose_entities("order,customer", None, '["*.*"]') == ["customer", "order"]
    assert choose_entities(None, None, '["order*.*"]') == ["order", "order_line_item"]


def test_unknown_or_no_entities_are_one_clear_error():
    with pytest.raises(ReconcileError, match="unknown entity customers"):
        choose_entities("customers", None, None)
    with pytest.raises(ReconcileError, match="no entity"):
        choose_entities("invoice", None, '["customer.*"]')


def test_a_catalogs_selected_streams(tmp_path):
    def stream(name, selected):
        return {"tap_stream_id": name, "metadata": [{"breadcrumb": [], "metadata": {"selected": selected}}]}

    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"streams": [stream("order", True), stream("customer", False)]}))
    assert catalog_selection(str(path)) == {"order"}
    assert choose_entities(None, str(path), '["*.*"]') == ["order"]


def test_the_warehouse_from_a_loaders_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MELTANO_EXTRACT__LOAD_SCHEMA", raising=False)
    duck = from_loader_settings("target-duckdb", {"filepath": "output/w.duckdb"}, None)
    assert (duck.kind, duck.location, duck.schema) == ("duckdb", str(tmp_path / "output/w.duckdb"), "apixx")
    pg = from_loader_settings("target-postgres", {"host": "db", "port": 5433, "user": "u",
                                                  "password": "p@ss", "database": "wh",
                                                  "default_target_schema": "raw"}, None)
    assert (pg.kind, pg.location, pg.schema) == ("postgres", "postgresql://u:p%40ss@db:5433/wh", "raw")
    assert postgres_url_of({"host": "h", "ssl_enable": True}).endswith("?sslmode=verify-full")
    with pytest.raises(ReconcileError, match="neither a DuckDB file"):
        from_loader_settings("target-x", {"batch_size": 5}, None)
    with pytest.raises(ReconcileError, match="say where the warehouse is"):
        resolve(None, None, None, None)
    # the loaders take their schema from the extractor's load_schema (one per tenant)
    monkeypatch.setenv("MELTANO_EXTRACT__LOAD_SCHEMA", "apixx_acme")
    assert from_loader_settings("target-duckdb", {"filepath": "/w.duckdb"}, None).schema == "apixx_acme"
    assert resolve("/w.duckdb", None, None, None).schema == "apixx_acme"
    assert resolve("/w.duckdb", None, None, "mine").schema == "mine"


def test_passwords_never_reach_a_message():
    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "secret" not in redact_url("host=h password=secret dbname=db")


def test_the_resync_command_rereads_one_entity_without_moving_the_bookmark(monkeypatch):
    monkeypatch.setenv("MELTANO_ENVIRONMENT", "prod")
    monkeypatch.delenv("MELTANO_EXTRACTOR_NAME", raising=False)
    command = report.resync_command("order", "2026-01-01T00:00:00.000Z", "target-postgres")
    assert command == ("TAP_APIXX_START_DATE=2026-01-01T00:00:00.000Z "
                       "TAP_APIXX__SELECT='[\"order.*\"]' meltano --environment=prod run "
                       "--full-refresh --no-state-update tap-apixx target-postgres")


def outcome_of(drifts: dict, acted: dict | None = None) -> Outcome:
    sweeps = {name: Sweep(name, {A: T0, B: T0 + 10, D: T0 + 5}, requests=1) for name in drifts}
    return Outcome(warehouse="DuckDB w (schema apixx)", loader="target-duckdb",
                   started_at=from_us(CUTOFF), cutoff=from_us(CUTOFF), start_date=None, end_date=None,
                   entities=drifts, sweeps=sweeps, sweep_seconds=2.0, requests=30,
                   acted=acted or {})


def test_report_json_holds_counts_ids_cost_and_the_fix():
    drift = compare("customer", {A: T0, B: T0 + 10, D: T0 + 5},
                    {A: (T0, False), B: (T0, False), C: (T0, False)}, CUTOFF)
    body = json.loads(report.as_json(outcome_of({"customer": drift}), Actions()))
    entity = body["entities"]["customer"]
    assert (entity["gone"], entity["missing"], entity["stale"]) == (1, 1, 1)
    assert (entity["gone_ids"], entity["missing_ids"], entity["stale_ids"]) == ([C], [D], [B])
    assert entity["resync"]["from"] == from_us(T0 + 5) and entity["resync"]["records"] == 2
    assert body["requests"]["total"] == 30 and body["requests"]["budget_minutes"] == 0.05
    assert body["requests"]["budget_share"] == 0.05  # 30 of the 600 one minute allows
    assert body["drift"] == 3 and body["remaining_drift"] == 3


def test_report_table_and_drift_left_after_marking():
    drift = compare("customer", {A: T0}, {A: (T0, False), C: (T0, False)}, CUTOFF)
    before = outcome_of({"customer": drift})
    text = report.as_table(before, Actions())
    assert "--mark-deleted" in text and "Drift: 1 row(s)" in text
    after = outcome_of({"customer": drift}, acted={"customer": {"marked": 1, "unmarked": 0, "deleted": 0}})
    assert after.remaining_drift == 0
    assert "No drift" in report.as_table(after, Actions(mark_deleted=True))


# -- the DuckDB side, on files this test writes ------------------------------------------

def make_warehouse(path, rows: dict[str, list[tuple]], deleted_column: bool = False):
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA apixx")
    for entity, items in rows.items():
        extra = ", _sdc_deleted_at VARCHAR" if deleted_column else ""
        con.execute(f'CREATE TABLE apixx."{entity}" (canonical_id VARCHAR, updated_at TIMESTAMP, name VARCHAR{extra})')
        for cid, ts in items:
            con.execute(f'INSERT INTO apixx."{entity}" (canonical_id, updated_at) VALUES (?, ?)', [cid, ts])
    con.close()


def test_duckdb_rows_are_read_as_instants(tmp_path):
    path = tmp_path / "w.duckdb"
    make_warehouse(path, {"order": [(A, "2026-01-01 00:00:00.123"), (B, "2026-01-01 00:00:01")]})
    warehouse = DuckDBWarehouse(path, "apixx")
    assert warehouse.rows("order") == {A: (T0 + 123_000, False), B: (T0 + 1_000_000, False)}
    assert warehouse.min_updated_us("order") == T0 + 123_000
    assert warehouse.rows("customer") is None  # no table: nothing loaded yet
    # DuckDB draws a progress bar on stdout for long queries: it would break the --json output
    assert warehouse.con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (False,)
    warehouse.close()


def test_mark_deleted_adds_the_column_and_touches_only_the_named_rows(tmp_path):
    path = tmp_path / "w.duckdb"
    make_warehouse(path, {"order": [(A, "2026-01-01"), (B, "2026-01-01"), (C, "2026-01-01")]})
    warehouse = DuckDBWarehouse(path, "apixx")
    done = warehouse.apply("order", mark=[A, B], unmark=[], delete=[], at="2026-02-02T00:00:00.000Z")
    assert done == {"marked": 2, "unmarked": 0, "deleted": 0}
    assert {k for k, (_, marked) in warehouse.rows("order").items() if marked} == {A, B}
    again = warehouse.apply("order", mark=[A], unmark=[B], delete=[C], at="2026-03-03T00:00:00.000Z")
    assert again == {"marked": 0, "unmarked": 1, "deleted": 1}  # A keeps its first mark
    assert warehouse.rows("order") == {A: (T0, True), B: (T0, False)}
    warehouse.close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute('SELECT _sdc_deleted_at FROM apixx."order" WHERE canonical_id = ?', [A]).fetchone() == (
        "2026-02-02T00:00:00.000Z",)
    con.close()


def test_writes_need_the_duckdb_release_that_created_the_file(tmp_path):
    path = tmp_path / "w.duckdb"
    make_warehouse(path, {"order": [(A, "2026-01-01")]})
    assert duckdb_file_version(path) == "v" + duckdb.__version__
    older = tmp_path / "older.duckdb"
    shutil.copy(path, older)
    with open(older, "r+b") as handle:  # the header as a DuckDB 0.1.0 would have written it
        handle.seek(52)
        handle.write(b"v0.1.0".ljust(32, b"\0"))
    warehouse = DuckDBWarehouse(older, "apixx")
    with pytest.raises(ReconcileError, match=r"created by DuckDB v0\.1\.0.*duckdb==0\.1\.0"):
        warehouse.check_writable()
    DuckDBWarehouse(path, "apixx").check_writable()  # same release line: fine


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ReconcileError, match="no DuckDB file"):
        DuckDBWarehouse(tmp_path / "nope.duckdb", "apixx")


def test_every_canonical_entity_can_be_chosen():
    assert choose_entities(None, None, None) == list(CANONICAL_ENTITIES)

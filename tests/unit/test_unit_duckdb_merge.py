"""scripts/duckdb_merge.py: per-window DuckDB files upserted into one warehouse, newest row winning."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from duckdb_merge import merge


def make(path: Path, rows: list[tuple], extra: str | None = None) -> str:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA apixx")
    columns = "canonical_id VARCHAR PRIMARY KEY, updated_at TIMESTAMP, status VARCHAR"
    con.execute(f'CREATE TABLE apixx."order" ({columns}{", " + extra + " VARCHAR" if extra else ""})')
    for row in rows:
        con.execute(f'INSERT INTO apixx."order" VALUES ({", ".join("?" * len(row))})', list(row))
    con.close()
    return str(path)


def rows_of(path: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        result = con.execute('SELECT * FROM apixx."order" ORDER BY canonical_id').fetchall()
        return {r[0]: r[1:] for r in result}
    finally:
        con.close()


def test_windows_merge_newest_wins_and_new_columns_are_added(tmp_path):
    w1 = make(tmp_path / "w1.duckdb", [("a", "2026-01-01 00:00:00", "paid"), ("b", "2026-01-02 00:00:00", "paid")])
    w2 = make(tmp_path / "w2.duckdb", [("b", "2026-02-01 00:00:00", "refunded", "gold"),
                                       ("c", "2026-02-02 00:00:00", "paid", None)], extra="tier")
    into = tmp_path / "warehouse.duckdb"
    written = merge(str(into), [w1, w2])
    assert written == {"apixx.order": 3}
    rows = rows_of(into)
    assert set(rows) == {"a", "b", "c"}
    assert rows["b"][1:] == ("refunded", "gold")  # the later window's newer row
    assert rows["a"][2] is None  # a column only a later window has: NULL for the others
    con = duckdb.connect(str(into), read_only=True)
    ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'order'").fetchone()[0]
    con.close()
    assert "PRIMARY KEY" in ddl  # target-duckdb's own table definition, not a bare copy


def test_a_newer_row_already_in_the_warehouse_is_kept_and_merging_again_changes_nothing(tmp_path):
    into = make(tmp_path / "warehouse.duckdb", [("a", "2026-03-01 00:00:00", "shipped")])
    w1 = make(tmp_path / "w1.duckdb", [("a", "2026-01-01 00:00:00", "paid"), ("b", "2026-01-02 00:00:00", "paid")])
    merge(into, [w1])
    merge(into, [w1])
    rows = rows_of(Path(into))
    assert rows["a"][1] == "shipped" and set(rows) == {"a", "b"}

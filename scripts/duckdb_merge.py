"""Merge DuckDB files loaded by target-duckdb (one per backfill window) into one warehouse file.

DuckDB lets one process write a file at a time, so parallel backfill windows each load their
own file and this merges them afterwards, as the only writer. For every table of every window
file, the rows are upserted into the same schema and table of the warehouse by primary key
(`canonical_id`, else `id`); when a row is in several places, the one with the latest
`updated_at` wins, a row already in the warehouse included. Missing tables are created with
the window file's own DDL (so primary keys and column types are target-duckdb's), missing
columns are added. The window files are only read, so a failed merge can simply be re-run.

Run it with the target-duckdb plugin's own Python (`scripts/backfill.py` does), so that the
warehouse file keeps the DuckDB version target-duckdb writes:

    .meltano/loaders/target-duckdb/venv/bin/python scripts/duckdb_merge.py INTO.duckdb W1.duckdb W2.duckdb
"""

from __future__ import annotations

import sys
import time

import duckdb

LOCK_WAIT_SECONDS = 600  # another process (a scheduled load) may hold the warehouse: wait for it
KEYS = ("canonical_id", "id")


def connect(path: str) -> duckdb.DuckDBPyConnection:
    """Open the warehouse for writing, waiting while another process holds it."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            print(f"duckdb_merge: {path} is in use by another process; waiting", file=sys.stderr)
            time.sleep(5)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tables_of(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str, str]]:
    return con.execute(
        "SELECT schema_name, table_name, sql FROM duckdb_tables() WHERE database_name = ? "
        "ORDER BY 1, 2", [database]).fetchall()


def columns_of(con: duckdb.DuckDBPyConnection, database: str, schema: str, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index", [database, schema, table])
    return dict(rows.fetchall())


def merge(into: str, windows: list[str]) -> dict[str, int]:
    """Upsert every table of `windows` into `into`; returns rows written per schema.table."""
    con = connect(into)
    aliases = []
    for index, path in enumerate(windows):
        alias = f"w{index}"
        con.execute(f"ATTACH {quote_literal(path)} AS {alias} (READ_ONLY)")
        aliases.append(alias)
    home = con.execute("SELECT current_database()").fetchone()[0]
    found: dict[tuple[str, str], list[str]] = {}
    ddl: dict[tuple[str, str], str] = {}
    for alias in aliases:
        for schema, table, sql in tables_of(con, alias):
            found.setdefault((schema, table), []).append(alias)
            ddl.setdefault((schema, table), sql)
    written = {}
    for (schema, table), sources in found.items():
        written[f"{schema}.{table}"] = merge_table(con, home, schema, table, sources, ddl[(schema, table)])
    con.close()
    return written


def merge_table(con: duckdb.DuckDBPyConnection, home: str, schema: str, table: str,
                sources: list[str], ddl: str) -> int:
    target = f"{quote(home)}.{quote(schema)}.{quote(table)}"
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(home)}.{quote(schema)}")
    if not columns_of(con, home, schema, table):
        con.execute(f"USE {quote(home)}")
        con.execute(ddl)  # target-duckdb's own CREATE TABLE (schema-qualified, primary key)
    have = columns_of(con, home, schema, table)
    for alias in sources:
        for column, kind in columns_of(con, alias, schema, table).items():
            if column not in have:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote(column)} {kind}")
                have[column] = kind
    key = next((k for k in KEYS if k in have), None)
    union = " UNION ALL BY NAME ".join(
        f"SELECT * FROM {alias}.{quote(schema)}.{quote(table)}" for alias in sources)
    newest = f"ORDER BY {quote('updated_at')} DESC NULLS LAST" if "updated_at" in have else ""
    con.execute("BEGIN")
    if key is None:
        con.execute(f"INSERT INTO {target} BY NAME {union}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE merge_src AS SELECT * FROM ({union}) "
                    f"QUALIFY row_number() OVER (PARTITION BY {quote(key)} {newest}) = 1")
        if newest:  # a newer row already in the warehouse (a later load) wins
            con.execute(f"DELETE FROM merge_src USING {target} AS t WHERE t.{quote(key)} = "
                        f"merge_src.{quote(key)} AND t.updated_at >= merge_src.updated_at")
        con.execute(f"DELETE FROM {target} USING merge_src WHERE {target}.{quote(key)} = "
                    f"merge_src.{quote(key)}")
        con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM merge_src")
    count = con.execute("SELECT count(*) FROM merge_src").fetchone()[0] if key else -1
    con.execute("COMMIT")
    return count


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    written = merge(argv[0], argv[1:])
    total = sum(max(n, 0) for n in written.values())
    print(f"duckdb_merge: {total} rows upserted into {argv[0]} from {len(argv) - 1} file(s), "
          f"{len(written)} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

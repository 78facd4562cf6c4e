"""The warehouse side of reconcile: read the loaded tables, mark or delete gone rows.

Two back ends, one shape: DuckDB (the file target-duckdb writes) and PostgreSQL (what
target-postgres writes). Rows are read as `canonical_id -> (updated_at in µs, marked deleted)`.
"""

from __future__ import annotations

import typing as t
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tap_apixx.reconcile.errors import ReconcileError

Rows = dict[str, tuple[int | None, bool]]  # canonical_id -> (updated_at µs, marked deleted)
DELETED_COLUMN = "_sdc_deleted_at"  # the Singer targets' soft-delete column
DUCKDB_HEADER_VERSION = slice(52, 84)  # MainHeader: the library version that created the file
TIME_TYPES = ("timestamp", "date")  # data types whose epoch can be taken directly


class Warehouse(t.Protocol):
    kind: str
    schema: str

    def describe(self) -> str: ...
    def check_writable(self) -> None: ...
    def columns(self, entity: str) -> dict[str, str] | None: ...
    def min_updated_us(self, entity: str) -> int | None: ...
    def rows(self, entity: str) -> Rows | None: ...
    def apply(
        self,
        entity: str,
        mark: list[str],
        unmark: list[str],
        delete: list[str],
        at: str,
        *,
        add_column: bool = False,
    ) -> dict[str, int]: ...
    def close(self) -> None: ...


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqlReader:
    """What both back ends read the same way; each says how it spells the few SQL differences."""

    schema: str
    PARAM = "?"  # the driver's placeholder
    ID_TEXT = "CAST(canonical_id AS VARCHAR)"  # canonical_id as text

    @property
    def con(self) -> t.Any:
        raise NotImplementedError

    def epoch_us(self, cols: dict[str, str]) -> str:
        """SQL for updated_at as exact epoch microseconds, given the table's column types."""
        raise NotImplementedError

    def _fetch(self, query: str) -> t.Iterable[tuple]:
        return self.con.execute(query).fetchall()

    def columns(self, entity: str) -> dict[str, str] | None:
        found = self.con.execute(
            "SELECT lower(column_name), lower(data_type) FROM information_schema.columns "
            f"WHERE table_schema = {self.PARAM} AND table_name = {self.PARAM}",
            [self.schema, entity],
        ).fetchall()
        return dict(found) or None

    def min_updated_us(self, entity: str) -> int | None:
        cols = self.columns(entity)
        if not cols or "updated_at" not in cols:
            return None
        query = f"SELECT min({self.epoch_us(cols)}) FROM {self._table(entity)}"
        return self.con.execute(query).fetchone()[0]

    def rows(self, entity: str) -> Rows | None:
        cols = self.columns(entity)
        if cols is None:
            return None
        _require_columns(entity, cols)
        deleted = f"{DELETED_COLUMN} IS NOT NULL" if DELETED_COLUMN in cols else "false"
        query = (
            f"SELECT {self.ID_TEXT}, {self.epoch_us(cols)}, {deleted} FROM {self._table(entity)}"
        )
        return {cid: (us, bool(gone)) for cid, us, gone in self._fetch(query)}

    def _table(self, entity: str) -> str:
        return f"{quote(self.schema)}.{quote(entity)}"


class DuckDBWarehouse(SqlReader):
    """A DuckDB file, read with `read_only=True`; written only by a compatible DuckDB.

    target-duckdb 0.8.0 is pinned to DuckDB 1.2.2, and DuckDB does not promise that an older
    release reads a file a newer one wrote to. So writes (`--mark-deleted`, `--hard-delete`)
    need the DuckDB release line that created the file: see `check_writable`.
    """

    kind = "duckdb"

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path, self.schema = Path(path), schema
        self._con: t.Any = None
        if not self.path.is_file():
            raise ReconcileError(
                f"no DuckDB file at {self.path}: run a sync first, or pass --duckdb PATH"
            )

    def describe(self) -> str:
        return f"DuckDB {self.path} (schema {self.schema})"

    @property
    def con(self) -> t.Any:
        if self._con is None:
            self._con = self._connect(read_only=True)
        return self._con

    def _connect(self, *, read_only: bool) -> t.Any:
        duckdb = _import("duckdb")
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            hint = (
                " (is a sync writing it right now? try again when it ends)"
                if "lock" in first.lower()
                else ""
            )
            raise ReconcileError(f"cannot open {self.path}: {first}{hint}") from None
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB draws a progress bar on stdout for long queries: the report's (or JSON's) stdout
        con.execute("SET enable_progress_bar = false")
        return con

    def epoch_us(self, cols: dict[str, str]) -> str:
        return _duck_us(cols)

    def check_writable(self) -> None:
        """Refuse to write with a DuckDB of another release line than the file's creator."""
        duckdb = _import("duckdb")
        creator = duckdb_file_version(self.path)
        if creator and _minor(creator) != _minor(duckdb.__version__):
            raise ReconcileError(
                f"{self.path} was created by DuckDB {creator} (the target's); this reconcile runs "
                f"DuckDB {duckdb.__version__}, and a file it writes to may then be unreadable for "
                f"the target. Run the write where duckdb=={creator.lstrip('v')} is installed: "
                "`meltano invoke tap-apixx:reconcile --mark-deleted` (that venv pins it), or "
                f"`pip install duckdb=={creator.lstrip('v')}`. Reading needs no such match."
            )

    def apply(
        self,
        entity: str,
        mark: list[str],
        unmark: list[str],
        delete: list[str],
        at: str,
        *,
        add_column: bool = False,
    ) -> dict[str, int]:
        """Mark, unmark and delete rows by id, in one transaction per entity.

        The column is added when marking, or with `add_column`, so that analysts can filter
        every table with `WHERE _sdc_deleted_at IS NULL`, whether it had gone rows or not.
        """
        self.check_writable()
        self.close()  # the read-only connection, so that a writing one can open
        con = self._connect(read_only=False)
        table = self._table(entity)
        try:
            con.execute("BEGIN")
            if mark or unmark or add_column:
                # VARCHAR: the type target-duckdb itself gives the column (add_metadata_columns),
                # so that turning that setting on later does not rename it away
                con.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {DELETED_COLUMN} VARCHAR"
                )
            kind = dict(
                con.execute(
                    "SELECT lower(column_name), data_type FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?",
                    [self.schema, entity],
                ).fetchall()
            ).get(DELETED_COLUMN, "VARCHAR")
            done = {
                "marked": _duck_update(
                    con,
                    f"UPDATE {table} SET {DELETED_COLUMN} = CAST(? AS {kind}) "
                    f"WHERE {DELETED_COLUMN} IS NULL AND",
                    mark,
                    at,
                ),
                "unmarked": _duck_update(
                    con, f"UPDATE {table} SET {DELETED_COLUMN} = NULL WHERE", unmark
                ),
                "deleted": _duck_update(con, f"DELETE FROM {table} WHERE", delete),
            }
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return done

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _duck_update(con: t.Any, statement: str, ids: list[str], *params: str) -> int:
    """Run `statement ... canonical_id IN (ids)`; the number of rows it changed."""
    if not ids:
        return 0
    sql = f"{statement} CAST(canonical_id AS VARCHAR) IN (SELECT unnest(CAST(? AS VARCHAR[])))"
    return int(con.execute(sql, [*params, ids]).fetchone()[0])


def _duck_us(cols: dict[str, str]) -> str:
    kind = cols.get("updated_at", "")
    if kind.startswith(TIME_TYPES):
        return "epoch_us(updated_at)"
    return "epoch_us(CAST(updated_at AS TIMESTAMPTZ))"


def duckdb_file_version(path: Path) -> str | None:
    """The DuckDB version that created a database file (`v1.2.2`), from its header."""
    with open(path, "rb") as handle:
        header = handle.read(DUCKDB_HEADER_VERSION.stop)
    if header[8:12] != b"DUCK":
        return None
    text = header[DUCKDB_HEADER_VERSION].split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return text or None


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.lstrip("v").split(".")[:2])


class PostgresWarehouse(SqlReader):
    """A PostgreSQL database, as target-postgres loads it (one table per stream in a schema)."""

    kind = "postgres"
    PARAM = "%s"
    ID_TEXT = "canonical_id::text"

    def __init__(self, url: str, schema: str) -> None:
        psycopg = _import("psycopg", "psycopg[binary]")
        self.url, self.schema = url, schema
        try:
            self._con = psycopg.connect(_libpq_url(url), autocommit=True)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ReconcileError(
                f"cannot connect to PostgreSQL {redact_url(url)}: {first}"
            ) from None
        self.con.execute("SET TIME ZONE 'UTC'")

    @property
    def con(self) -> t.Any:
        return self._con

    def describe(self) -> str:
        return f"PostgreSQL {redact_url(self.url)} (schema {self.schema})"

    def epoch_us(self, cols: dict[str, str]) -> str:
        return _pg_us(cols)

    def _fetch(self, query: str) -> t.Iterator[tuple]:
        with self.con.cursor() as cursor:  # rows streamed from the cursor, not one big list
            cursor.execute(query)
            yield from cursor

    def apply(
        self,
        entity: str,
        mark: list[str],
        unmark: list[str],
        delete: list[str],
        at: str,
        *,
        add_column: bool = False,
    ) -> dict[str, int]:
        table = self._table(entity)
        with self.con.transaction():
            if (
                mark or unmark or add_column
            ):  # TIMESTAMP: the type target-postgres gives it (add_record_metadata)
                self.con.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {DELETED_COLUMN} TIMESTAMP"
                )
            kind = (self.columns(entity) or {}).get(DELETED_COLUMN, "timestamp")
            return {
                "marked": self._update(
                    f"UPDATE {table} SET {DELETED_COLUMN} = CAST(%s AS {kind}) "
                    f"WHERE {DELETED_COLUMN} IS NULL AND",
                    mark,
                    at,
                ),
                "unmarked": self._update(
                    f"UPDATE {table} SET {DELETED_COLUMN} = NULL WHERE", unmark
                ),
                "deleted": self._update(f"DELETE FROM {table} WHERE", delete),
            }

    def check_writable(self) -> None:
        """Nothing to check: PostgreSQL serves every client version the same tables."""

    def _update(self, statement: str, ids: list[str], *params: str) -> int:
        if not ids:
            return 0
        cursor = self.con.execute(f"{statement} canonical_id::text = ANY(%s)", [*params, ids])
        return cursor.rowcount

    def close(self) -> None:
        self.con.close()


def _pg_us(cols: dict[str, str]) -> str:
    """Exact epoch microseconds (EXTRACT(EPOCH) alone is a float before PostgreSQL 14)."""
    value = (
        "updated_at"
        if cols.get("updated_at", "").startswith(TIME_TYPES)
        else "updated_at::timestamptz"
    )
    return (
        f"(EXTRACT(EPOCH FROM date_trunc('second', {value}))::bigint * 1000000 "
        f"+ EXTRACT(MICROSECONDS FROM {value})::bigint % 1000000)"
    )


def _require_columns(entity: str, cols: dict[str, str]) -> None:
    missing = [c for c in ("canonical_id", "updated_at") if c not in cols]
    if missing:
        raise ReconcileError(
            f"table {entity} has no {' or '.join(missing)} column: is it a tap-apixx table?"
        )


def _libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg2://`) as libpq takes it (`postgresql://`)."""
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "://" not in url:
        return " ".join(part for part in url.split() if not part.startswith("password="))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _import(module: str, package: str | None = None) -> t.Any:
    try:
        return __import__(module)
    except ImportError:
        raise ReconcileError(
            f"this warehouse needs the '{package or module}' package: "
            "pip install 'tap-apixx[reconcile]'"
        ) from None

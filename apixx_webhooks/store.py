"""Durable, idempotent SQLite storage for received webhook deliveries."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_DB_PATH = "./apixx-webhooks.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT NOT NULL UNIQUE,   -- X-Apixx-Delivery: a retry keeps it, so it dedupes
    event_id     TEXT NOT NULL,          -- body "id"
    type         TEXT NOT NULL,          -- X-Apixx-Event (checked equal to body "type")
    created_at   TEXT,                   -- body "created_at", as sent
    received_at  TEXT NOT NULL,          -- RFC 3339 UTC, millisecond precision, Z suffix
    body         BLOB NOT NULL           -- the raw bytes that were signed
);
-- the event id is inside the signed body: a replay under a new delivery id is a no-op too
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id);
CREATE INDEX IF NOT EXISTS events_type_received ON events (type, received_at);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
-- a sync requested by a stored event and not yet run: written in the event's own transaction,
-- so an acknowledged event's sync survives a crash; deleted once a sync has covered it
CREATE TABLE IF NOT EXISTS pending_syncs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL,
    requested_at  TEXT NOT NULL
);
"""


class StoreError(Exception):
    """The database cannot be opened, read or written; the message is one line for users."""


@dataclass(frozen=True)
class StoredEvent:
    delivery_id: str
    event_id: str
    type: str
    created_at: str | None
    received_at: str
    body: bytes


def utc_now_iso() -> str:
    return format_utc(datetime.now(timezone.utc))


def format_utc(moment: datetime) -> str:
    """One fixed textual form, so that string comparison in SQL is time comparison."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def parse_since(value: str) -> str:
    """Normalise a user's ISO 8601 timestamp (naive means UTC) to the stored form."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since {value!r} is not an ISO 8601 timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_utc(moment)


def _connect(path: str, read_only: bool) -> sqlite3.Connection:
    if read_only:
        if not Path(path).is_file():
            raise StoreError(f"no webhook database at {path}")
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


class EventStore:
    """One SQLite connection guarded by a lock: webhook volume is low, correctness is not."""

    def __init__(self, path: str = DEFAULT_DB_PATH, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = _connect(path, read_only)
            if not read_only:
                self._prepare()
            self._conn.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open webhook database {path}: {exc}") from None

    def _prepare(self) -> None:
        # WAL + synchronous=FULL: a commit is on disk when execute() returns, before any 2xx
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def insert(self, event: StoredEvent, request_sync: bool = False) -> bool:
        """Store a delivery; False (and no change) when its delivery id or event id is already stored.

        With ``request_sync``, a newly stored event also records a pending sync, in the same
        transaction: once this returns, neither the event nor its sync can be lost.
        """
        row = (
            event.delivery_id,
            event.event_id,
            event.type,
            event.created_at,
            event.received_at,
            event.body,
        )
        try:
            with self._lock, self._transaction():
                cursor = self._conn.execute(
                    "INSERT OR IGNORE INTO events (delivery_id, event_id, type, created_at,"
                    " received_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                stored = cursor.rowcount == 1
                if stored and request_sync:
                    self._conn.execute(
                        "INSERT INTO pending_syncs (delivery_id, requested_at) VALUES (?, ?)",
                        (event.delivery_id, event.received_at),
                    )
                return stored
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to webhook database {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # autocommit mode (isolation_level=None): BEGIN/COMMIT are ours to issue
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def pending_sync(self) -> int | None:
        """The newest pending sync request's id, or None when no sync is owed."""
        try:
            with self._lock:
                (newest,) = self._conn.execute("SELECT max(id) FROM pending_syncs").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read webhook database {self.path}: {exc}") from None
        return newest

    def clear_pending_sync(self, through: int) -> None:
        """Forget the sync requests a finished sync covered (those up to ``through``)."""
        try:
            with self._lock:
                self._conn.execute("DELETE FROM pending_syncs WHERE id <= ?", (through,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to webhook database {self.path}: {exc}") from None

    def list_events(
        self, event_type: str | None = None, since: str | None = None, limit: int = 100
    ) -> list[StoredEvent]:
        """The most recent ``limit`` matching events, oldest first."""
        where, params = [], []
        if event_type:
            where.append("type = ?")
            params.append(event_type)
        if since:
            where.append("received_at >= ?")
            params.append(since)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = (
            "SELECT delivery_id, event_id, type, created_at, received_at, body FROM ("
            f"SELECT * FROM events {clause} ORDER BY id DESC LIMIT ?) ORDER BY id"
        )
        try:
            with self._lock:
                rows = self._conn.execute(sql, [*params, limit]).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read webhook database {self.path}: {exc}") from None
        return [StoredEvent(row[0], row[1], row[2], row[3], row[4], bytes(row[5])) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

"""A small APIXX data API, independent of apixx_emulator, whose paging semantics tests choose.

`updated_since` inclusive (>=) or exclusive (>); `updated_at` in milliseconds or microseconds,
with `Z` or `+00:00`; `cursor` exclusive, inclusive or opaque; ties ordered by id or shuffled
on every request. It parses `updated_since` at its own precision, rounding half up as a
careless server would, so a client that sends finer digits than the server keeps can be caught.
Faults for the tap's boundary checks: `hide` drops ids from the list while `GET` still shows
them unchanged (a server that skips records), `ignore_since` serves every page from the start.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import threading
import typing as t
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
MAX_LIMIT = 1000
KEY = "apx_test_fake_0123456789"


def format_us(us: int, precision: str, suffix: str) -> str:
    """An updated_at string of instant `us` (microseconds) at the server's precision and form."""
    whole, frac = divmod(us, 1_000_000)
    base = (EPOCH + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac // 1000:03d}" if precision == "ms" else f"{frac:06d}"
    return f"{base}.{digits}{suffix}"


def parse_us(text: str) -> int:
    """Microseconds since the epoch of any RFC 3339 timestamp (extra digits truncated)."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def tie_timeline(n: int, seed: int, big: int = 0, unit_us: int = 1000) -> list[int]:
    """n ascending instants: singles and ties of 2..20, plus one group of `big` (if > 0).

    Consecutive groups sit one `unit_us` apart every few steps, so stepping back one unit from
    a boundary meets the previous group (the case that stalls a careless inclusive client).
    """
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < n - big:
        sizes.append(rng.randint(2, 20) if rng.random() < 0.2 else 1)
    sizes[-1] -= sum(sizes) - (n - big)
    if big:
        sizes.insert(len(sizes) // 2, big)
    stamps, now = [], START_US
    for size in filter(None, sizes):
        now += unit_us if rng.random() < 0.3 else rng.randint(2, 50) * unit_us
        stamps += [now] * size
    return stamps


@dataclass
class FakeApixx:
    """The data API of one tenant; `with FakeApixx(...) as fake:` serves it on a free port."""

    since_mode: str = "exclusive"  # or "inclusive"
    precision: str = "ms"  # or "us"
    suffix: str = "Z"  # or "+00:00"
    cursor_mode: str = "exclusive"  # or "inclusive", "opaque"
    shuffle_ties: bool = False  # tie order differs on every request
    hide: set[str] = field(default_factory=set)  # ids the list skips, though GET shows them
    ignore_since: bool = False
    tables: dict[str, dict[str, int]] = field(default_factory=dict)  # entity -> id -> instant
    requests: list[dict[str, t.Any]] = field(default_factory=list)
    after_list: t.Callable[[int], None] | None = None  # called with the count of list requests

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # Data

    @property
    def unit_us(self) -> int:
        return 1000 if self.precision == "ms" else 1

    def add(self, entity: str, stamps: t.Iterable[int]) -> list[str]:
        """New records at the given instants (microseconds, cut to the server's precision)."""
        table = self.tables.setdefault(entity, {})
        ids = []
        for us in stamps:
            cid = str(uuid.UUID(int=next(self._ids), version=4))
            table[cid] = us - us % self.unit_us
            ids.append(cid)
        return ids

    def update(self, entity: str, ids: t.Iterable[str], us: int | None = None) -> int:
        """Give `ids` one new updated_at (default: one unit after the newest record)."""
        table = self.tables[entity]
        us = us if us is not None else max(table.values()) + self.unit_us
        for cid in ids:
            table[cid] = us - us % self.unit_us
        return us

    def delete(self, entity: str, ids: t.Iterable[str]) -> None:
        for cid in ids:
            del self.tables[entity][cid]

    def stamp(self, us: int) -> str:
        return format_us(us, self.precision, self.suffix)

    def truth(self, entity: str) -> dict[str, str]:
        """canonical_id -> updated_at as the server shows it."""
        return {cid: self.stamp(us) for cid, us in self.tables.get(entity, {}).items()}

    def list_requests(self, entity: str) -> list[dict[str, t.Any]]:
        return [r for r in self.requests if r["path"] == f"/{entity}"]

    # Serving

    def page(self, entity: str, params: dict[str, str]) -> dict[str, t.Any]:
        limit = int(params.get("limit", 100))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit {limit} outside 1..{MAX_LIMIT}")
        rows = sorted(self.tables.get(entity, {}).items(), key=lambda kv: (kv[1], kv[0]))
        if self.shuffle_ties:
            rows = self._shuffled_ties(rows)
        start = 0
        if "updated_since" in params and not self.ignore_since:
            since = self._at_own_precision(parse_us(params["updated_since"]))
            keep = (lambda us: us >= since) if self.since_mode == "inclusive" else (lambda us: us > since)
            start = next((i for i, (_, us) in enumerate(rows) if keep(us)), len(rows))
        if "cursor" in params:
            start = max(start, self._after_cursor(rows, params["cursor"]))
        chosen = [row for row in rows[start:] if row[0] not in self.hide][:limit]
        last_index = rows.index(chosen[-1]) if chosen else len(rows)
        more = any(cid not in self.hide for cid, _ in rows[last_index + 1:])
        data = [{"canonical_id": cid, "updated_at": self.stamp(us), "external_ids": {}}
                for cid, us in chosen]
        cursor = self._cursor(chosen[-1], last_index) if chosen and more else None
        return {"entity": entity, "count": len(data), "next_cursor": cursor, "data": data}

    def _at_own_precision(self, us: int) -> int:
        unit = self.unit_us
        return (us + unit // 2) // unit * unit  # rounds half up: sub-unit digits are not kept

    def _shuffled_ties(self, rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for _, group in itertools.groupby(rows, key=lambda kv: kv[1]):
            members = list(group)
            self._rng.shuffle(members)
            out += members
        return out

    def _cursor(self, row: tuple[str, int], index: int) -> str:
        if self.cursor_mode == "opaque":
            return base64.urlsafe_b64encode(f"offset:{index + 1}".encode()).decode()
        return self.stamp(row[1])

    def _after_cursor(self, rows: list[tuple[str, int]], cursor: str) -> int:
        if self.cursor_mode == "opaque":
            return int(base64.urlsafe_b64decode(cursor).decode().split(":")[1])
        at = parse_us(cursor)
        inclusive = self.cursor_mode == "inclusive"
        return next((i for i, (_, us) in enumerate(rows) if (us >= at if inclusive else us > at)), len(rows))

    def serve(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, t.Any]]:
        with self._lock:
            parts = path.strip("/").split("/")
            if len(parts) == 1 and parts[0] in self.tables:
                body = self.page(parts[0], params)
                if self.after_list:  # changes made while the client pages
                    self.after_list(len(self.list_requests(parts[0])))
                return 200, body
            if len(parts) == 2 and parts[1] in self.tables.get(parts[0], {}):
                us = self.tables[parts[0]][parts[1]]
                return 200, {"canonical_id": parts[1], "updated_at": self.stamp(us), "external_ids": {}}
            return 404, {"error": {"code": "not_found", "message": f"No {path}."}}

    @property
    def data_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def config(self, **settings: t.Any) -> dict[str, t.Any]:
        return {"api_key": KEY, "data_url": self.data_url, "lookback_minutes": 0, "semantics_probe": False,
                **settings}

    def __enter__(self) -> FakeApixx:  # noqa: PYI034 (the class is not subclassed)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def _handler(fake: FakeApixx) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            request_id = f"req_fake{len(fake.requests) + 1}"
            fake.requests.append({"path": url.path, "params": params, "request_id": request_id})
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                status, body = 401, {"error": {"code": "unauthorized", "message": "Bad key."}}
            else:
                try:
                    status, body = fake.serve(url.path, params)
                except ValueError as exc:
                    status, body = 422, {"error": {"code": "validation_error", "message": str(exc)}}
            if "error" in body:
                body["error"]["request_id"] = request_id
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Request-Id", request_id)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: t.Any) -> None:
            pass

    return Handler

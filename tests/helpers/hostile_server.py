"""A tiny threaded HTTP server for the hostile-input tests: it answers whatever a test scripts.

Unlike the emulator it can misbehave at the byte level: trickle a response one byte at a time,
send a body far larger than any page, send odd rate-limit headers, loop a cursor, or 404 one
detail. Each test gives it a `route` function: request in, `Reply` out.
"""

from __future__ import annotations

import itertools
import json
import socket
import socketserver
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Request:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}


@dataclass
class Reply:
    """What to answer. `body` may be an iterable of chunks (sent as they come)."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle_seconds: float | None = None  # pause between single bytes of the whole response
    length: int | None = None  # Content-Length to announce when `body` is an iterable


def json_reply(payload: t.Any, status: int = 200, **headers: str) -> Reply:
    request_id = headers.pop("request_id", "req_hostile")
    return Reply(status, json.dumps(payload).encode(),
                 {"Content-Type": "application/json", "X-Request-Id": request_id, **headers})


@dataclass
class Connection:
    """Bytes the server sent on one connection, and whether the client hung up first."""

    sent: int = 0
    client_gone: bool = False
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None


class HostileServer:
    """`with HostileServer(route) as server:` serves on `server.url` (127.0.0.1, a free port)."""

    def __init__(self, route: Callable[[Request], Reply]) -> None:
        self.route = route
        self.requests: list[Request] = []
        self.connections: list[Connection] = []
        self.stopping = threading.Event()
        hostile = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                hostile._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler,
                                                       bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:  # noqa: PYI034
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    # One connection: requests in a keep-alive loop until the client closes it.

    def _serve(self, sock: socket.socket) -> None:
        conn = Connection()
        self.connections.append(conn)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        reader = sock.makefile("rb")
        try:
            while not self.stopping.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                self._answer(sock, self.route(request), conn)
        except (BrokenPipeError, ConnectionResetError, OSError):
            conn.client_gone = True
        finally:
            conn.closed = time.monotonic()
            reader.close()

    def _answer(self, sock: socket.socket, reply: Reply, conn: Connection) -> None:
        chunks: Iterable[bytes]
        if isinstance(reply.body, bytes):
            chunks, length = [reply.body], len(reply.body)
        else:
            chunks, length = reply.body, reply.length
        head = f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Whatever')}\r\n"
        headers = {"Connection": "keep-alive", **reply.headers}
        if length is not None:
            headers["Content-Length"] = str(length)
        else:
            headers["Connection"] = "close"  # the end of the body is the end of the connection
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        first = [head.encode("latin-1") + (reply.body if isinstance(reply.body, bytes) else b"")]
        rest = [] if isinstance(reply.body, bytes) else _iter(chunks)
        for piece in _pieces(itertools.chain(first, rest), reply.trickle_seconds):
            if self.stopping.is_set():
                raise ConnectionResetError
            sock.sendall(piece)
            conn.sent += len(piece)
        if length is None:
            sock.shutdown(socket.SHUT_WR)
            raise ConnectionResetError  # done with this connection


def _iter(chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield from chunks


def _pieces(chunks: Iterable[bytes], trickle: float | None) -> Iterator[bytes]:
    for chunk in chunks:
        if trickle is None:
            yield chunk
            continue
        for index in range(len(chunk)):
            time.sleep(trickle)
            yield chunk[index:index + 1]


def _read_request(reader: t.BinaryIO) -> Request | None:
    line = reader.readline(65536)
    if not line.strip():
        return None
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) != 3:
        return None  # not HTTP (a TLS hello, say): hang up
    method, target, _ = parts
    headers: dict[str, str] = {}
    while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if length := int(headers.get("content-length", "0") or 0):
        reader.read(length)
    return Request(method, target, headers)


# Well-behaved fakes of the two APIs, for tests to spoil one detail of.

def uid(name: str) -> str:
    """A stable UUID for a test object (canonical ids are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def data_records(count: int, entity: str = "order") -> list[dict[str, t.Any]]:
    """`count` records of `entity`, one per second from 2026-01-01, ascending updated_at."""
    return [{"canonical_id": uid(f"{entity}-{i}"), "updated_at": f"2026-01-01T00:{i // 60 % 60:02d}:"
             f"{i % 60:02d}.000Z", "external_ids": {}} for i in range(count)]


def data_page(records: list[dict[str, t.Any]], request: Request, **headers: str) -> Reply:
    """The data API's list answer: `updated_since` inclusive, `limit`, `next_cursor`."""
    since = request.query.get("updated_since") or ""
    limit = int(request.query.get("limit", "100"))
    rows = [r for r in records if r["updated_at"] >= since][:limit]
    cursor = rows[-1]["updated_at"] if len(rows) == limit else None
    entity = request.path.rsplit("/", 1)[-1]
    return json_reply({"entity": entity, "count": len(rows), "next_cursor": cursor, "data": rows},
                      **headers)


STAMP = "2026-01-01T00:00:00.000Z"
OPS_FIELDS = {
    "flw": {"status": "active", "source": "shopify", "destination": "netsuite",
            "schedule": "hourly", "last_run_at": None, "created_at": STAMP, "updated_at": STAMP},
    "con": {"system": "shopify", "status": "connected", "last_verified_at": STAMP,
            "last_error": None},
    "run": {"flow_id": "flw_0000", "status": "succeeded", "trigger": "schedule", "retry_of": None,
            "started_at": STAMP, "finished_at": STAMP, "duration_ms": 1, "records_processed": 1,
            "records_failed": 0},
}


def ops_item(item_id: str) -> dict[str, t.Any]:
    """An ops object (flow, connector or run by its id's prefix) with every listed field."""
    return {"id": item_id, "name": f"item {item_id}", **OPS_FIELDS.get(item_id[:3], {})}


def ops_detail(item: dict[str, t.Any]) -> dict[str, t.Any]:
    """The detail of an ops object: the list fields and what only the detail has."""
    ends = {end: {"id": f"con_{end}", "name": end, "system": "shopify", "status": "connected"}
            for end in ("source", "destination")}
    schedule = {"interval_seconds": 3600, "timezone": "UTC"}
    extra = {"connectors": ends, "schedule_detail": schedule} if item["id"].startswith("flw") else {}
    return {**item, **extra, "errors": []}


def ops_items(count: int, prefix: str = "flw") -> list[dict[str, t.Any]]:
    return [ops_item(f"{prefix}_{i:04d}") for i in range(count)]


def ops_page(items: list[dict[str, t.Any]], request: Request, **headers: str) -> Reply:
    """An ops list answer: `starting_after` (by id), `limit`, `meta.has_more`."""
    after = request.query.get("starting_after")
    limit = int(request.query.get("limit", "25"))
    start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0)
    rows = items[start:start + limit]
    more = start + limit < len(items)
    return json_reply({"data": rows, "meta": {"total": len(items), "has_more": more}}, **headers)

"""HTTP receiver for APIXX webhooks: verify the signature, store durably, then answer 2xx."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from apixx_webhooks.store import EventStore, StoredEvent, StoreError, utc_now_iso
from apixx_webhooks.sync_runner import SyncTrigger
from apixx_webhooks.verify import DEFAULT_TOLERANCE, SignatureError, verify

log = logging.getLogger("apixx_webhooks.server")

DEFAULT_MAX_BODY = 1_048_576  # 1 MiB: deliveries carry one run/flow/connector object
WEBHOOK_PATHS = frozenset({"/", "/webhooks"})
MAX_HEADER_VALUE = 256  # delivery ids and event names are short; cap what we store
DEFAULT_MAX_CONNECTIONS = 32  # deliveries handled at once; past it, 503 without a thread
DEFAULT_REQUEST_DEADLINE = 10.0  # seconds for a whole request (headers and body) to arrive
WRITE_TIMEOUT_SECONDS = 5.0  # answers are tiny: a client that will not read one is dropped
BUSY_LOG_INTERVAL = 10.0  # seconds between "busy" warnings, so a flood does not flood the log
OTHER_METHODS = ("GET", "PUT", "PATCH", "DELETE", "OPTIONS")


class RequestRejected(Exception):
    """A delivery answered with an error status and the API's error body shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class ReceiverConfig:
    secret: str
    store: EventStore
    max_body: int = DEFAULT_MAX_BODY
    tolerance: int = DEFAULT_TOLERANCE
    trigger: SyncTrigger | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_deadline: float = DEFAULT_REQUEST_DEADLINE

    def __repr__(self) -> str:  # never let the secret reach a log line or a traceback
        return f"ReceiverConfig(store={self.store.path!r}, max_body={self.max_body})"


def _required_header(headers: Message, name: str) -> str:
    value = (headers.get(name) or "").strip()
    if not value:
        raise RequestRejected(400, "invalid_request", f"missing {name} header")
    if len(value) > MAX_HEADER_VALUE or not value.isprintable():
        raise RequestRejected(400, "invalid_request", f"{name} header is not a short printable id")
    return value


def _json_object(body: bytes) -> dict:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RequestRejected(400, "invalid_request", "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise RequestRejected(400, "invalid_request", "body is not a JSON object")
    return payload


def _busy_response() -> bytes:
    body = json.dumps(RequestRejected(503, "busy", "too many deliveries at once; retry").body())
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode()


BUSY_RESPONSE = _busy_response()


class DeadlineSocketReader(io.RawIOBase):
    """Reads a socket only until a fixed moment, so a trickling client cannot stretch a
    request: an idle timeout alone restarts with every byte."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def parse_delivery(headers: Message, body: bytes) -> StoredEvent:
    """Validate an authenticated delivery's headers and body into the row to store."""
    delivery_id = _required_header(headers, "X-Apixx-Delivery")
    event_type = _required_header(headers, "X-Apixx-Event")
    payload = _json_object(body)
    body_type, event_id = payload.get("type"), payload.get("id")
    if body_type != event_type:
        raise RequestRejected(
            400,
            "invalid_request",
            f"X-Apixx-Event {event_type!r} disagrees with body type {body_type!r}",
        )
    if not isinstance(event_id, str) or not event_id:
        raise RequestRejected(400, "invalid_request", "body has no string id")
    created_at = payload.get("created_at")
    return StoredEvent(
        delivery_id=delivery_id,
        event_id=event_id,
        type=event_type,
        created_at=created_at if isinstance(created_at, str) else None,
        received_at=utc_now_iso(),
        body=body,
    )


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer
    server_version = "apixx-webhooks"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + self.server.config.request_deadline
        self.rfile.close()  # replaced by a reader that enforces the whole-request deadline
        self.rfile = io.BufferedReader(DeadlineSocketReader(self.connection, deadline))

    def do_POST(self) -> None:
        try:
            status, payload = self._receive()
        except RequestRejected as rejected:
            log.warning("rejected delivery: %s %s", rejected.status, rejected.message)
            status, payload = rejected.status, rejected.body()
        self._send_json(status, payload)

    def _method_not_allowed(self) -> None:
        error = RequestRejected(405, "method_not_allowed", f"{self.command} is not allowed")
        self._send_json(405, error.body(), extra_headers={"Allow": "POST"})

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _method_not_allowed

    def _receive(self) -> tuple[int, dict]:
        if urlsplit(self.path).path not in WEBHOOK_PATHS:
            raise RequestRejected(404, "not_found", "POST deliveries to / or /webhooks")
        body = self._read_body()
        config = self.server.config
        try:
            verify(
                config.secret,
                self.headers.get("X-Apixx-Signature"),
                body,
                tolerance=config.tolerance,
            )
        except SignatureError as exc:
            raise RequestRejected(401, "unauthorized", f"signature {exc.reason}: {exc}") from None
        event = parse_delivery(self.headers, body)
        trigger = config.trigger
        wants_sync = trigger is not None and trigger.matches(event.type)
        try:
            # committed (durable), with the sync it asks for, before we answer
            stored = config.store.insert(event, request_sync=wants_sync)
        except StoreError as exc:
            log.error("%s", exc)
            raise RequestRejected(503, "internal_error", "event could not be stored") from None
        log.info(
            "%s delivery %s (%s, event %s)",
            "stored" if stored else "duplicate",
            event.delivery_id,
            event.type,
            event.event_id,
        )
        if stored and wants_sync and trigger is not None:
            trigger.notify(event.type)
        return 200, {"stored": stored, "delivery_id": event.delivery_id}

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestRejected(411, "length_required", "send a Content-Length, not chunked")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            raise RequestRejected(411, "length_required", "Content-Length is required")
        if not raw_length.strip().isdigit():
            raise RequestRejected(400, "invalid_request", "Content-Length is not a number")
        length = int(raw_length)
        if length > self.server.config.max_body:
            # decided from the header alone: an oversized body is never read into memory
            raise RequestRejected(
                413, "payload_too_large", f"body over {self.server.config.max_body} bytes"
            )
        try:
            body = self.rfile.read(length)  # length <= max_body, so reading is capped
        except TimeoutError:
            raise RequestRejected(
                408,
                "request_timeout",
                f"request not received within {self.server.config.request_deadline:g}s",
            ) from None
        except OSError:
            body = b""
        if len(body) != length:
            raise RequestRejected(400, "invalid_request", "body shorter than Content-Length")
        return body

    def _send_json(self, status: int, payload: dict, extra_headers: dict | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.connection.settimeout(WRITE_TIMEOUT_SECONDS)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError as exc:  # the sender hung up; it will retry the delivery
            log.warning("could not answer %s: %s", self.client_address[0], exc)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: object) -> None:  # e.g. "Request timed out"
        log.warning("%s %s", self.address_string(), format % args)


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client thread must not block shutdown
    request_queue_size = 64  # the sender's retries can arrive in bursts

    def __init__(self, address: tuple[str, int], config: ReceiverConfig) -> None:
        if ":" in address[0]:  # an IPv6 literal such as "::1"
            self.address_family = socket.AF_INET6
        super().__init__(address, WebhookHandler)
        self.config = config
        self.busy_refusals = 0
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._busy_logged_at = -BUSY_LOG_INTERVAL

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """A thread per delivery, but never more than ``max_connections`` of them."""
        if not self._slots.acquire(blocking=False):
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse_busy(self, request: socket.socket) -> None:
        """Answer 503 from the accepting thread, without reading the request (the sender
        retries later), so a crowd of slow clients costs no thread and no waiting."""
        self.busy_refusals += 1
        now = time.monotonic()
        if now - self._busy_logged_at >= BUSY_LOG_INTERVAL:
            self._busy_logged_at = now
            log.warning(
                "busy: %d deliveries in progress, answering 503 to new ones",
                self.config.max_connections,
            )
        try:
            request.setblocking(False)
            try:
                request.recv(65536)  # what already arrived: closing on unread data resets
            except OSError:
                pass
            request.send(BUSY_RESPONSE)
        except OSError:
            pass
        self.shutdown_request(request)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]  # AF_INET(6): a str
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def serve_in_background(
    config: ReceiverConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[WebhookServer]:
    """Run a receiver on a thread (port 0: a free port) for tests and end-to-end checks."""
    server = WebhookServer((host, port), config)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="webhooks-http",
        daemon=True,
    )  # a short poll keeps shutdown quick for tests
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

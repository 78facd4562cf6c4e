"""ASGI middleware in front of every route: request ids, faults, auth, rate limits and the request log."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .exceptions import (
    ApiError,
    Forbidden,
    InternalError,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    new_request_id,
)
from .inputs import MAX_BODY_BYTES
from .models import Store
from .models.faults import HTML_502
from .models.ratelimit import bucket_for

DATA_PREFIX = "/api/public/data"
OPS_PREFIX = "/v1"
CONTROL_PREFIX = "/_emulator"
LOOPBACK = ("127.", "::1", "localhost")
log = logging.getLogger("apixx_emulator")


def is_api(path: str) -> bool:
    return path.startswith((DATA_PREFIX, OPS_PREFIX))


def route_name(path: str) -> str:
    """A route template for the stats, e.g. /api/public/data/order/{id} -> data:order:one."""
    if path.startswith(DATA_PREFIX):
        parts = [p for p in path[len(DATA_PREFIX):].split("/") if p]
        return f"data:{parts[0]}:{'one' if len(parts) > 1 else 'list'}" if parts else "data"
    if path.startswith(OPS_PREFIX):
        parts = [p for p in path[len(OPS_PREFIX):].split("/") if p]
        return "ops:" + ":".join(p if i % 2 == 0 else "{id}" for i, p in enumerate(parts))
    return path


def guard_control_plane(scope: dict) -> None:
    """The control plane changes everything and needs no key, so only a local program may call it:
    the caller's address and the Host it asked for must both be loopback (a web page cannot then
    reach it, even through DNS rebinding), and a body must be JSON (a cross-site HTML form cannot
    send that without the browser asking first)."""
    client = (scope.get("client") or ("",))[0] or ""
    if not client.startswith(LOOPBACK) and client != "testclient":
        raise Forbidden("The control plane answers on loopback only.")
    host = header(scope, b"host")
    if not loopback_host(host) and not (client == "testclient" and host == "testserver"):  # Starlette's TestClient
        shown = "no Host header" if host is None else f"Host {host[:80]!r}"
        raise Forbidden(f"The control plane answers only to a loopback Host "
                                         f"(localhost, 127.0.0.1 or [::1]); this request has {shown}.")
    length = header(scope, b"content-length")
    has_body = scope["method"] in ("POST", "PUT", "PATCH") or (length not in (None, "0")) \
        or header(scope, b"transfer-encoding") is not None
    kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if has_body and kind != "application/json":
        raise UnsupportedMediaType(f"The control plane takes JSON: send "
                                                      f"'Content-Type: application/json' (got {kind[:80] or 'none'!r}).")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise TooLarge(f"A control-plane body must be at most {MAX_BODY_BYTES} bytes.")


def loopback_host(host: str | None) -> bool:
    """localhost, 127.x.y.z or [::1], with or without a port."""
    if host is None:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name, closed, port = name[1:].partition("]")
        if not closed or (port and not port.startswith(":")):
            return False
        port = port[1:]
    else:
        name, _, port = name.partition(":")
    if port and not (port.isdigit() and len(port) <= 5):
        return False
    if name in ("localhost", "::1"):
        return True
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def abort_connection(receive: Any) -> bool:
    """Drop the TCP connection without an answer, as a reset would (uvicorn keeps the transport
    on the object behind `receive`)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


class Gate:
    def __init__(self, app: Any, store: Store):
        self.app = app
        self.store = store

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        outcome = {"status": 0, "key_id": None}
        started = time.perf_counter()
        try:
            if path.startswith(CONTROL_PREFIX):
                guard_control_plane(scope)
                return await self._forward(scope, receive, send, extra, outcome, None)
            if not is_api(path):
                return await self._forward(scope, receive, send, extra, outcome, None)
            fault, delay = self.store.faults.draw()
            if delay:
                await asyncio.sleep(delay)
            if fault in ("error_500", "html_502", "rate_429"):
                return await self._send_fault(fault, send, extra, request_id, outcome)
            if fault == "reset" and abort_connection(receive):
                outcome["status"] = -1
                return
            key, auth_error = self._authenticate(scope)
            outcome["key_id"] = key.key_id if key else None
            scope["state"]["api_key"] = key
            # unauthenticated callers share a window per address, so even a 401 carries the headers
            client = key.key_id if key else "anon:" + ((scope.get("client") or ("?",))[0] or "?")
            decision = self.store.limiter.check(client, bucket_for(method, path))
            extra += [(b"x-ratelimit-limit", str(decision.limit).encode()),
                      (b"x-ratelimit-remaining", str(decision.remaining).encode()),
                      (b"x-ratelimit-reset", str(decision.reset).encode())]
            if key is None:
                raise auth_error
            if not decision.allowed:
                raise RateLimited(f"Rate limit of {decision.limit} requests per minute exceeded; retry after "
                               f"{decision.retry_after} s.", {"retry-after": str(decision.retry_after)})
            await self._forward(scope, receive, send, extra, outcome, fault if fault == "truncated" else None)
        except ApiError as err:
            await send_error(send, err, request_id, extra, outcome)
        except asyncio.CancelledError:  # the server is stopping (SIGTERM) while this request waits
            if not outcome["status"]:
                await send_error(send, Unavailable("The emulator is shutting down; retry later."),
                                 request_id, extra, outcome)
        except Exception:  # a bug: still one JSON error with the request id, never a plain-text 500
            log.exception("unhandled error in %s %s (%s)", method, path, request_id)
            if outcome["status"]:
                return  # the answer had started: nothing more can be said on this connection
            err = InternalError(f"Internal error in the emulator (request {request_id}); see its log.")
            await send_error(send, err, request_id, extra, outcome)
        finally:
            self._log(scope, outcome, started)

    def _authenticate(self, scope: dict) -> tuple[Any, ApiError | None]:
        """The caller's key, or the 401 to answer once the rate-limit headers are known."""
        auth = header(scope, b"authorization")
        if not auth:
            return None, Unauthorized("Missing bearer token: send 'Authorization: Bearer <key>'.")
        scheme, _, secret = auth.partition(" ")
        key = self.store.keys.lookup(secret.strip()) if scheme.lower() == "bearer" else None
        if key is None:  # never echo the key back
            return None, Unauthorized("Invalid API key (unknown, revoked or rotated).")
        return key, None

    async def _send_fault(self, fault: str, send: Any, extra: list, request_id: str, outcome: dict) -> None:
        if fault == "html_502":
            outcome["status"] = 502
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(HTML_502)).encode()), *extra]})
            await send({"type": "http.response.body", "body": HTML_502})
            return
        if fault == "rate_429":
            retry = str(self.store.faults.config.retry_after)
            err = RateLimited(f"Too many requests; retry after {retry} s.", {"retry-after": retry})
        else:
            err = InternalError("Internal error (injected fault); safe to retry.")
        await send_error(send, err, request_id, extra, outcome)

    async def _forward(self, scope, receive, send, extra, outcome, fault) -> None:
        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            elif message["type"] == "http.response.body" and fault == "truncated":
                body = message.get("body", b"")
                await send({**message, "body": body[: len(body) // 2], "more_body": True})
                if abort_connection(receive):
                    outcome["status"] = -2
                    return
            await send(message)

        await self.app(scope, receive, send_wrapped)

    def _log(self, scope: dict, outcome: dict, started: float) -> None:
        path = scope["path"]
        if not is_api(path):
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        self.store.log_request({
            "method": scope["method"], "path": path, "route": route_name(path), "params": query,
            "status": outcome["status"], "key_id": outcome["key_id"], "at": time.time(),
            "ms": round((time.perf_counter() - started) * 1000, 2),
        })


async def send_error(send: Any, err: ApiError, request_id: str, extra: list, outcome: dict) -> None:
    body = orjson.dumps(err.body(request_id))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    headers += [(k.encode(), v.encode()) for k, v in err.headers.items()]
    outcome["status"] = err.status
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

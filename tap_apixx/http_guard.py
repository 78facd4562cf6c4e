"""One HTTP exchange under guard: to a configured origin only, within a deadline, size-capped.

`requests` has an idle timeout only (the gap between two reads), so a server trickling a byte
a second holds a request open for ever. Here each request gets a deadline for the whole
exchange (connect, headers, body): a watchdog thread shuts the request's socket when it passes,
which ends any blocked read at once. The body is read in chunks and refused past a size cap
(after decompression, so a gzip bomb is caught too). And a request goes out only to an origin
(scheme, host, port) read from the settings by the same parser `requests` connects with.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import socket
import threading
import time
import typing as t
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

DEFAULT_REQUEST_DEADLINE = 300  # seconds for a whole exchange; a 1000-record page takes ~1 s
MAX_REQUEST_DEADLINE = 3600
DEFAULT_MAX_RESPONSE_BYTES = 256 * 2**20  # 256 MiB: ~50x the largest page the API sends
MIN_RESPONSE_BYTES = 1000
MAX_RESPONSE_BYTES = 2**40
CHUNK_BYTES = 2**16
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) as urllib3 reads `url`, the parser `requests` connects with."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return None
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parsed.host:
        return None
    return scheme, parsed.host.lower(), parsed.port or DEFAULT_PORTS[scheme]


class DeadlineExceeded(requests.exceptions.Timeout):
    """No complete response within the request deadline: transient, like any timeout."""


class ResponseTooLarge(requests.exceptions.RequestException):
    """The body passed the size cap: not retried, the same answer would come back."""


class OriginRefused(requests.exceptions.RequestException):
    """A request to an origin that is not one of the configured URLs': never sent."""


@dataclass
class Limits:
    """What each exchange of a stream is held to."""

    deadline: float = DEFAULT_REQUEST_DEADLINE
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    origins: frozenset[Origin] = frozenset()


# The watchdog: one thread for the whole process, waking at the earliest deadline.


@dataclass(order=True)
class Watch:
    """The sockets of one exchange, shut down if it is still running at `deadline`."""

    deadline: float
    number: int
    sockets: list[socket.socket] = field(default_factory=list, compare=False)
    expired: bool = field(default=False, compare=False)
    done: bool = field(default=False, compare=False)

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with _watchdog.lock:
            self.sockets.append(sock)
            if self.expired:
                _shut(sock)


class Watchdog:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.heap: list[Watch] = []
        self.numbers = itertools.count()
        self.thread: threading.Thread | None = None

    def start(self, seconds: float) -> Watch:
        watch = Watch(time.monotonic() + seconds, next(self.numbers))
        with self.lock:
            heapq.heappush(self.heap, watch)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="request-deadline", daemon=True
                )
                self.thread.start()
            self.lock.notify()
        return watch

    def finish(self, watch: Watch) -> None:
        with self.lock:
            watch.done = True
            watch.sockets.clear()

    def _run(self) -> None:
        with self.lock:
            while True:
                while self.heap and self.heap[0].done:
                    heapq.heappop(self.heap)
                if not self.heap:
                    self.lock.wait()
                    continue
                delay = self.heap[0].deadline - time.monotonic()
                if delay > 0:
                    self.lock.wait(delay)
                    continue
                watch = heapq.heappop(self.heap)
                watch.expired = True
                for sock in watch.sockets:
                    _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
    except OSError:
        pass


_watchdog = Watchdog()
_current = threading.local()  # the Watch of the exchange running on this thread


def _attach_current(sock: socket.socket | None) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(sock)


class _Watched:
    """Connection mixin: hands every socket it uses to the current exchange's watch."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _attach_current(sock)
        return sock

    def request(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        _attach_current(getattr(self, "sock", None))  # a kept-alive connection, reused
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


POOL_CLASSES = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections the watchdog can cut."""

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **kwargs: t.Any) -> t.Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = POOL_CLASSES
        return manager


def mount(session: requests.Session) -> None:
    """Make every request of `session` go through watched connections."""
    adapter = WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


# One exchange


def check_origin(url: str, origins: Iterable[Origin]) -> None:
    """Refuse a URL whose origin is not a configured one (no request is made)."""
    target = origin_of(url)
    if target is None or target not in origins:
        host = target[1] if target else "an unparseable URL"
        msg = f"refusing to send the API key to {host}: not the host of data_url or api_url"
        raise OriginRefused(msg)


def exchange(
    send: Callable[..., requests.Response],
    request: requests.PreparedRequest,
    limits: Limits,
    **kwargs: t.Any,
) -> requests.Response:
    """`send(request, stream=True, ...)`, then the body, all within `limits`.

    Plain http (allowed to loopback only) never goes through a proxy: HTTP_PROXY would
    otherwise carry the key in clear to whatever host the proxy is.
    """
    check_origin(request.url or "", limits.origins)
    if (origin_of(request.url or "") or ("",))[0] == "http":
        kwargs["proxies"] = {}
    idle = kwargs.pop("timeout", None)
    idle = min(float(idle), limits.deadline) if isinstance(idle, (int, float)) else limits.deadline
    watch = _watchdog.start(limits.deadline)
    _current.watch = watch
    try:
        response = send(request, stream=True, timeout=idle, **kwargs)
        _read_body(response, limits.max_bytes)
        return response
    except (ResponseTooLarge, OriginRefused):
        raise
    except (requests.exceptions.RequestException, OSError, http.client.HTTPException):
        if watch.expired or time.monotonic() >= watch.deadline:
            msg = f"no complete response within request_deadline ({limits.deadline:g} s)"
            raise DeadlineExceeded(msg, request=request) from None
        raise
    finally:
        _current.watch = None
        _watchdog.finish(watch)


def _read_body(response: requests.Response, cap: int) -> None:
    if getattr(response, "_content", False) is not False:  # read already (an adapter, a test)
        if len(response.content) > cap:
            raise ResponseTooLarge(_too_large(cap), response=response)
        return
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap and "Content-Encoding" not in response.headers:
        response.close()
        raise ResponseTooLarge(_too_large(cap, int(declared)), response=response)
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(_too_large(cap), response=response)
            chunks.append(chunk)
    except BaseException:
        response.close()  # not back to the pool: the connection is mid-body
        raise
    response._content = b"".join(chunks)


def _too_large(cap: int, declared: int | None = None) -> str:
    told = f" (it announced {declared:,} bytes)" if declared else ""
    return (
        f"the response is larger than max_response_bytes ({cap:,} bytes){told}; raise "
        "max_response_bytes if pages this large are expected"
    )

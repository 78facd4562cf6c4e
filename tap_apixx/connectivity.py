"""Connection failures (refused, DNS, TLS) told apart, with a hint naming the setting to fix."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import typing as t
from dataclasses import dataclass
from urllib.parse import urlparse

import requests

from tap_apixx.settings import is_loopback

# A failure on first contact with a host is almost always a setting (wrong URL, server not
# started), not a blip: retrying it for half a minute only hides the hint. These are the
# attempts and the wait between them before giving up, by kind.
FIRST_CONTACT_ATTEMPTS = {"refused": 3, "dns": 2, "tls": 1}
FIRST_CONTACT_WAIT_SECONDS = 0.5
PLAIN_HTTP_TLS_ERRORS = (
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "HTTP_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
)


@dataclass(frozen=True)
class ConnectionProblem:
    """What kept a request from reaching the server: `kind` is refused, dns or tls."""

    kind: str
    url: str  # the configured base URL (data_url or api_url)
    setting: str
    detail: str

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "?"

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def message(self) -> str:
        """One line: what happened, then which setting to check and how."""
        where, base = f"{self.host}:{self.port}", self.url
        if self.kind == "refused":
            text = (
                f"connection refused by {where}: nothing is listening there. Check {self.setting}"
            )
            if is_loopback(self.host):
                text += f" ({base}); to use the local emulator, start it: apixx-emulator --port {self.port}"
            return text + "."
        if self.kind == "dns":
            return (
                f"cannot resolve host '{self.host}' ({self.detail}). Check {self.setting} "
                f"({base}) and the network's DNS."
            )
        if self.plain_http:
            fixed = base.replace("https://", "http://", 1)
            text = (
                f"TLS handshake with {where} failed ({self.detail}): the server answers plain "
                f"http, not https. Check {self.setting}"
            )
            if is_loopback(self.host):
                return text + f": the local emulator speaks http, use {fixed}."
            return text + " (a wrong port, or a proxy in the way?)."
        if "CERTIFICATE_VERIFY_FAILED" in self.detail:
            return (
                f"the TLS certificate of {where} is not trusted ({self.detail}). Check "
                f"{self.setting} ({base}); behind a proxy that re-signs traffic, set "
                "REQUESTS_CA_BUNDLE to its CA bundle."
            )
        return f"TLS handshake with {where} failed ({self.detail}). Check {self.setting} ({base})."

    @property
    def summary(self) -> str:
        """The message's first clause, for retry warnings (the final error has the hint)."""
        return (
            self.message.split(": ", 1)[0]
            if self.kind == "refused"
            else self.message.split(" (", 1)[0]
        )

    @property
    def plain_http(self) -> bool:
        return self.kind == "tls" and any(e in self.detail.upper() for e in PLAIN_HTTP_TLS_ERRORS)


def diagnose(exc: BaseException, url: str, setting: str) -> ConnectionProblem | None:
    """The ConnectionProblem behind a requests exception, or None for other failures
    (a reset, a timeout, a truncated body: transient, retried as such)."""
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return None
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            return ConnectionProblem("tls", url, setting, _ssl_detail(cause))
        if isinstance(cause, socket.gaierror):
            return ConnectionProblem("dns", url, setting, cause.strerror or str(cause))
        if (
            isinstance(cause, ConnectionRefusedError)
            or getattr(cause, "errno", None) == errno.ECONNREFUSED
        ):
            return ConnectionProblem("refused", url, setting, "connection refused")
    return None


class FirstContact:
    """Hosts that answered at least once in this run (thread-safe).

    A refusal from a host that answered a minute ago is a restart: retried as transient.
    The same refusal before any answer is a setting to fix: it fails within seconds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answered: set[str] = set()

    def answered(self, url: str) -> None:
        with self._lock:
            self._answered.add(_netloc(url))

    def made(self, url: str) -> bool:
        with self._lock:
            return _netloc(url) in self._answered

    def attempts(self, problem: ConnectionProblem) -> int | None:
        """How many attempts a problem gets before it fails for good (None: the usual)."""
        if self.made(problem.url):
            return None
        return FIRST_CONTACT_ATTEMPTS.get(problem.kind)


def _causes(exc: BaseException) -> t.Iterator[BaseException]:
    """The exception, what it wraps (urllib3's `reason`, args) and its causes, breadth first."""
    seen: set[int] = set()
    queue: list[t.Any] = [exc]
    while queue:
        item = queue.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        queue += [getattr(item, "reason", None), item.__cause__, item.__context__, *item.args]


def _ssl_detail(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None)
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"CERTIFICATE_VERIFY_FAILED: {verify}"
    return str(reason) if reason else " ".join(str(exc).split())


def _netloc(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}"

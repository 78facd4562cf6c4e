"""Webhook deliveries in plain Python: subscriptions, signed POSTs, retries with backoff over
emulator time, and a delivery log."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests

from ..exceptions import NotFound
from ..timestamps import iso_ms
from .clock import EmulatorClock

EVENTS = ("run.started", "run.succeeded", "run.partial", "run.failed", "connector.degraded", "flow.paused")
SEND_TIMEOUT = 5.0  # seconds a subscriber has to answer one attempt
FIRST_RETRY = 60  # seconds (emulator time) before the first retry; doubles each time ...
MAX_RETRY = 3600  # ... up to this
GIVE_UP_AFTER = 24 * 3600  # documented: retried for up to 24 hours
SENDERS = 4  # concurrent attempts, so one slow subscriber does not hold up the others
POLL_SECONDS = 0.25  # how often the sender looks for due retries, in real time
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
log = logging.getLogger("apixx_emulator.webhooks")


def token(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(16))


def signature(secret: str, body: bytes, t: int) -> str:
    """`X-Apixx-Signature`: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>."""
    digest = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def backoff(attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed attempt: 1m, 2m, 4m ... capped at 1h."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY)


@dataclass
class Subscription:
    id: str
    url: str
    secret: str
    events: list[str]
    source: str  # "settings" (--webhook) or "control" (POST /_emulator/webhooks)

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def view(self) -> dict[str, Any]:  # the secret is never shown
        return {"id": self.id, "url": self.url, "events": self.events, "source": self.source}


@dataclass
class Delivery:
    id: str
    event_id: str
    event_type: str
    subscription_id: str
    url: str
    secret: str
    body: bytes  # the same bytes on every attempt; only the signature's t changes
    created_s: float  # emulator time
    next_attempt_s: float | None
    state: str = "pending"  # pending | delivered | failed
    attempts: list[dict[str, Any]] = field(default_factory=list)
    in_flight: bool = False

    def due(self, now_s: float) -> bool:
        return self.state == "pending" and not self.in_flight and self.next_attempt_s is not None \
            and self.next_attempt_s <= now_s

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "event_id": self.event_id, "event": self.event_type,
                "subscription_id": self.subscription_id, "url": self.url, "state": self.state,
                "created_at": iso_ms(int(self.created_s * 1000)),
                "next_attempt_at": None if self.next_attempt_s is None else iso_ms(int(self.next_attempt_s * 1000)),
                "attempts": self.attempts, "payload": orjson.loads(self.body)}


class Dispatcher:
    """Turns events into deliveries, one per interested subscription, and sends due attempts."""

    def __init__(self, clock: EmulatorClock, configured: Callable[[], list[dict[str, Any]]]):
        self.clock, self.configured = clock, configured  # configured: the --webhook subscriptions
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.cond = threading.Condition()
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="apixx-webhook")
        self.load_settings()

    # -- subscriptions -------------------------------------------------------------------
    def load_settings(self) -> None:
        with self.cond:
            self.subscriptions.clear()
            for spec in self.configured():
                self._add(spec["url"], spec["secret"], spec.get("events") or ["*"], "settings")

    def subscribe(self, url: str, secret: str, events: list[str]) -> Subscription:
        with self.cond:
            return self._add(url, secret, events, "control")

    def _add(self, url: str, secret: str, events: list[str], source: str) -> Subscription:
        sub = Subscription(token("whk_"), url, secret, list(events), source)
        self.subscriptions[sub.id] = sub
        return sub

    def subscriptions_view(self) -> list[dict[str, Any]]:
        with self.cond:
            return [s.view() for s in self.subscriptions.values()]

    def deliveries_view(self, event: str | None, state: str | None, subscription_id: str | None) -> list[dict[str, Any]]:
        with self.cond:
            return [d.view() for d in self.deliveries.values()
                    if (event is None or d.event_type == event) and (state is None or d.state == state)
                    and (subscription_id is None or d.subscription_id == subscription_id)]

    def pending(self) -> int:
        with self.cond:
            return sum(d.state == "pending" for d in self.deliveries.values())

    def unsubscribe(self, sub_id: str) -> None:
        with self.cond:
            if self.subscriptions.pop(sub_id, None) is None:
                raise NotFound(f"No webhook subscription with id '{sub_id}'.")

    # -- events --------------------------------------------------------------------------
    def on_event(self, event_type: str, data: dict[str, Any], at_ms: int) -> None:
        body = orjson.dumps({"id": token("evt_"), "type": event_type, "created_at": iso_ms(at_ms), "data": data})
        event_id = orjson.loads(body)["id"]
        now = self.clock.now()
        with self.cond:
            for sub in self.subscriptions.values():
                if sub.wants(event_type):
                    delivery = Delivery(token("del_"), event_id, event_type, sub.id, sub.url, sub.secret, body, now, now)
                    self.deliveries[delivery.id] = delivery
            self.cond.notify_all()

    # -- sending -------------------------------------------------------------------------
    def send_due(self) -> list[Any]:
        """Start every due attempt; returns the futures."""
        now = self.clock.now()
        with self.cond:
            due = [d for d in self.deliveries.values() if d.due(now)]
            for delivery in due:
                delivery.in_flight = True
        return [self.pool.submit(self.attempt, d) for d in due]

    def attempt(self, delivery: Delivery) -> None:
        t = int(time.time())  # real time: what a receiver checks the 5-minute window against
        headers = {"Content-Type": "application/json", "User-Agent": "apixx-webhooks/1 (emulator)",
                   "X-Apixx-Event": delivery.event_type, "X-Apixx-Delivery": delivery.id,
                   "X-Apixx-Signature": signature(delivery.secret, delivery.body, t)}
        record: dict[str, Any] = {"attempt": len(delivery.attempts) + 1, "at": iso_ms(self.clock.now_ms()),
                                  "signature_t": t, "status": None, "error": None}
        started = time.perf_counter()
        try:
            answer = requests.post(delivery.url, data=delivery.body, headers=headers, timeout=SEND_TIMEOUT,
                                   allow_redirects=False)
            record["status"] = answer.status_code
        except requests.RequestException as err:
            record["error"] = f"{type(err).__name__}: {err}"[:300]
        record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        self.settle_attempt(delivery, record)

    def settle_attempt(self, delivery: Delivery, record: dict[str, Any]) -> None:
        with self.cond:
            delivery.attempts.append(record)
            delivery.in_flight = False
            if record["status"] is not None and 200 <= record["status"] < 300:
                delivery.state, delivery.next_attempt_s = "delivered", None
            else:
                retry_at = self.clock.now() + backoff(len(delivery.attempts))
                if retry_at - delivery.created_s > GIVE_UP_AFTER:
                    delivery.state, delivery.next_attempt_s = "failed", None
                else:
                    delivery.next_attempt_s = retry_at
            self.cond.notify_all()

    def settle(self, timeout: float = SEND_TIMEOUT * 3) -> None:
        """Send everything due now and wait for the answers (after emulator time moves)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send_due()
            with self.cond:
                now = self.clock.now()
                if not any(d.in_flight or d.due(now) for d in self.deliveries.values()):
                    return
                self.cond.wait(0.05)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.cond:
                self.cond.wait(POLL_SECONDS)
            try:
                self.send_due()
            except Exception:  # keep sending later deliveries whatever happened to this batch
                log.exception("webhook send failed")

    def reset(self) -> None:
        with self.cond:
            self.deliveries.clear()
        self.load_settings()

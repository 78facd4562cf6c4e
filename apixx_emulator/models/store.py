"""The emulator's whole state, typed: settings, keys, limits, datasets, ops, webhooks, faults,
bad data, the clock and the request log, with the lifecycle they share (reset, time, threads)."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ..timestamps import PRECISIONS
from .bad_data import BadData
from .clock import EmulatorClock
from .datasets import HISTORY_DAYS, Dataset, history_end_ms
from .faults import FaultInjector
from .keys import DEFAULT_KEYS, KeyRing
from .ops import OpsRegistry
from .ratelimit import WINDOW_SECONDS, RateLimiter
from .webhooks import Dispatcher

REQUEST_LOG_MAX = 200_000  # requests kept for GET /_emulator/stats


@dataclass
class Settings:
    seed: int = 42
    records_per_entity: int = 2000
    records_for: dict[str, int] = field(default_factory=dict)  # entity -> count, overriding the above
    cursor_mode: str = "exclusive"  # `cursor` compares with > (or >= when "inclusive")
    since_mode: str = "inclusive"  # `updated_since` compares with >= (or > when "exclusive")
    timestamp_precision: str = "ms"  # updated_at as ...123Z, or "us": ...123456+00:00
    max_tie_size: int = 1000
    read_limit: int = 600
    write_limit: int = 120
    trigger_limit: int = 60
    rate_window_seconds: float = WINDOW_SECONDS  # shorter only to make rate-limit tests quick
    keys: list[dict[str, Any]] = field(default_factory=lambda: [dict(k) for k in DEFAULT_KEYS])
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    # generated history ends at midnight UTC of the day the emulator started (a reset keeps it)
    history_end_ms: int = field(default_factory=history_end_ms)
    history_days: int = HISTORY_DAYS
    history_start_ms: int | None = None  # set: the history starts there instead (old fixtures)

    RESETTABLE = ("seed", "records_per_entity", "cursor_mode", "since_mode", "timestamp_precision")

    def public(self) -> dict[str, Any]:
        """What /_emulator/health shows: everything but keys and webhook secrets."""
        return {k: v for k, v in vars(self).items() if k not in ("keys", "webhooks")}


@dataclass
class Store:
    """Routes read and change only this. Datasets are made lazily, per tenant and environment."""

    settings: Settings
    keys: KeyRing = field(init=False)
    limiter: RateLimiter = field(init=False)
    clock: EmulatorClock = field(default_factory=EmulatorClock)
    faults: FaultInjector = field(default_factory=FaultInjector)
    bad_data: BadData = field(default_factory=BadData)
    webhooks: Dispatcher = field(init=False)
    ops: OpsRegistry = field(init=False)
    request_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_MAX))
    counters: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    datasets: dict[tuple[str, str], Dataset] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.keys = KeyRing(s.keys)
        self.limiter = RateLimiter({"read": s.read_limit, "write": s.write_limit, "trigger": s.trigger_limit},
                                   s.rate_window_seconds)
        self.webhooks = Dispatcher(self.clock, lambda: self.settings.webhooks)
        self.ops = OpsRegistry(self.clock, self.dataset, lambda: self.settings.seed, self.webhooks.on_event)

    # -- datasets ------------------------------------------------------------------------
    def dataset(self, tenant: str, env: str) -> Dataset:
        """The dataset of a tenant and environment, generated on first use."""
        with self.lock:
            ds = self.datasets.get((tenant, env))
            if ds is None:
                s = self.settings
                ds = Dataset(tenant, env, s.seed, s.records_per_entity, s.max_tie_size, s.records_for,
                             PRECISIONS[s.timestamp_precision], s.history_end_ms, s.history_start_ms, s.history_days)
                self.datasets[(tenant, env)] = ds
            return ds

    def ready(self, tenant: str, env: str) -> Dataset | None:
        """The dataset if it has been generated already (no waiting, no generating)."""
        return self.datasets.get((tenant, env))

    def tenants(self) -> list[tuple[str, str]]:
        return sorted({(k.tenant, k.env) for k in self.keys.by_id.values()})

    # -- lifecycle -----------------------------------------------------------------------
    def reset(self, **changes: Any) -> None:
        """Everything as at start (data made again on first use, the clock, ops history, keys,
        webhook deliveries), with any of Settings.RESETTABLE changed."""
        with self.lock:
            for name, value in changes.items():
                if name not in Settings.RESETTABLE:
                    raise ValueError(f"cannot reset {name!r}")
                if value is not None:
                    setattr(self.settings, name, value)
            self.datasets.clear()
        self.limiter.clear()
        self.ops.reset()
        self.clock.reset()
        self.keys = KeyRing(self.settings.keys)  # rotated keys work again
        self.webhooks.reset()

    def advance_time(self, seconds: float) -> None:
        """Move emulator time on; runs change phase and due webhook attempts are answered first."""
        self.clock.advance(seconds)
        self.ops.tick_all()
        self.webhooks.settle()

    def start(self) -> None:
        """The background threads: runs move along on their own, and webhooks are sent."""
        threading.Thread(target=self.ops.run_ticker, args=(self.stopping,), name="apixx-ops-ticker", daemon=True).start()
        threading.Thread(target=self.webhooks.run, args=(self.stopping,), name="apixx-webhook-sender", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def log_request(self, entry: dict[str, Any]) -> None:
        self.request_log.append(entry)
        self.counters[(entry["route"], entry["status"], entry["key_id"] or "-")] += 1

"""The ops API extension: per-tenant ops state on each dataset, a ticker that moves runs along, and the routes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import FastAPI

from .clock import clock_of, hooks
from .models import KeyRing, Store
from .ops_models import OpsState
from .ops_routes import build_api, build_control

TICK_SECONDS = 0.5  # how often runs in progress are checked for events, in real time
log = logging.getLogger("apixx_emulator.ops")


class OpsRegistry:
    """Finds or seeds the ops state of a tenant and environment; ticks them all."""

    def __init__(self, store: Store):
        self.store = store
        self.clock = clock_of(store)
        self.states: dict[tuple[str, str], OpsState] = {}
        self.lock = threading.Lock()

    def state_for(self, tenant: str, env: str) -> OpsState:
        dataset = self.store.dataset(tenant, env)
        with self.lock:
            if dataset.ops is None:
                dataset.ops = OpsState(self.store.settings.seed, tenant, env, self.clock.now_ms(), self.emit)
            self.states[(tenant, env)] = dataset.ops
            return dataset.ops

    def emit(self, event_type: str, data: dict[str, Any], at_ms: int) -> None:
        for sink in list(hooks(self.store, "event_sinks")):
            sink(event_type, data, at_ms)

    def tick_all(self) -> None:
        with self.lock:
            states = list(self.states.values())
        now = self.clock.now_ms()
        for state in states:
            state.tick(now)

    def reset(self) -> None:
        """After POST /_emulator/reset: fresh clock, fresh ops history, the original keys."""
        with self.lock:
            self.states.clear()
        self.clock.reset()
        self.store.keys = KeyRing(self.store.settings.keys)

    def run_ticker(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            try:
                self.tick_all()
            except Exception:  # a failed tick must not stop later ones
                log.exception("ops tick failed")


def install(app: FastAPI, store: Store) -> None:
    registry = OpsRegistry(store)
    store.extensions["ops"] = registry
    hooks(store, "on_reset").append(registry.reset)
    app.include_router(build_api(store, registry.clock, registry.state_for))
    app.include_router(build_control(store, registry.clock, registry.state_for, registry.tick_all))
    stop = threading.Event()
    store.extensions["ops_ticker_stop"] = stop
    threading.Thread(target=registry.run_ticker, args=(stop,), name="apixx-ops-ticker", daemon=True).start()

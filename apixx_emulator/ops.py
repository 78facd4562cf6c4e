"""The ops API extension: per-tenant ops state on each dataset, a ticker that moves runs along, and the routes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import FastAPI

from .clock import clock_of, hooks
from .entities import ENTITIES
from .models import Dataset, KeyRing, Store
from .ops_models import OpsState
from .ops_routes import build_api, build_control

LANDED_PER_RUN = 20  # canonical records a finished triggered run updates, and as many it inserts (at most)
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
                dataset.ops = OpsState(self.store.settings.seed, tenant, env, self.clock.now_ms(),
                                       self.emitter(dataset))
            self.states[(tenant, env)] = dataset.ops
            return dataset.ops

    def emitter(self, dataset: Dataset):
        """Events of one tenant: a triggered run that finishes also lands records in its data,
        as a real flow does, so that event-driven syncs have something new to load."""

        def emit(event_type: str, data: dict[str, Any], at_ms: int) -> None:
            if event_type in ("run.succeeded", "run.partial"):
                land(dataset, data)
            self.emit(event_type, data, at_ms)

        return emit

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


def land(dataset: Dataset, run: dict[str, Any]) -> None:
    flow = dataset.ops.flows.get(run.get("flow_id")) if dataset.ops else None
    if flow is None or flow.entity not in ENTITIES:
        return
    count = min(LANDED_PER_RUN, max(1, int(run.get("records_processed") or 0) - int(run.get("records_failed") or 0)))
    dataset.churn(flow.entity, updates=count, inserts=count, tie=False, set_fields=None)


def install(app: FastAPI, store: Store) -> None:
    registry = OpsRegistry(store)
    store.extensions["ops"] = registry
    hooks(store, "on_reset").append(registry.reset)
    app.include_router(build_api(store, registry.clock, registry.state_for))
    app.include_router(build_control(store, registry.clock, registry.state_for, registry.tick_all))
    stop = threading.Event()
    store.extensions["ops_ticker_stop"] = stop
    threading.Thread(target=registry.run_ticker, args=(stop,), name="apixx-ops-ticker", daemon=True).start()

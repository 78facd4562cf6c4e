"""The ops model in plain Python: flows, connectors and runs per tenant, their seeded history,
run lifecycle and events, and the registry of every tenant's ops state."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..entities import ENTITIES
from ..exceptions import Conflict, NotFound
from ..timestamps import iso_s
from .clock import EmulatorClock
from .datasets import Dataset

SCHEDULES = {"every_15m": 900, "hourly": 3600, "every_4h": 14400, "every_6h": 21600,
             "every_12h": 43200, "daily": 86400}  # schedule name -> interval in seconds
HISTORY_DAYS = 21  # seeded run history reaches this far back from the emulator's start
RUN_STATUSES = ("queued", "running", "succeeded", "partial", "failed")
TERMINAL = ("succeeded", "partial", "failed")
QUEUE_MS = (2_000, 5_000)  # a new run waits this long in `queued` before it runs
TRIGGERED_MS = (20_000, 180_000)  # how long a triggered or retried run takes, start to finish
SEEDED_MS = (30_000, 900_000)  # how long a historical run took
ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DISPLAY = {"shopify": "Shopify", "netsuite": "NetSuite", "stripe": "Stripe", "hubspot": "HubSpot",
           "salesforce": "Salesforce", "zendesk": "Zendesk"}
FLOW_TEMPLATES = [  # name, source, destination, schedule, entity, typical records per run
    ("Shopify → NetSuite Orders", "shopify", "netsuite", "every_4h", "order", 400),
    ("Stripe → NetSuite Payments", "stripe", "netsuite", "daily", "payment", 2500),
    ("HubSpot → Salesforce Contacts", "hubspot", "salesforce", "every_6h", "contact", 300),
    ("Shopify → HubSpot Customers", "shopify", "hubspot", "hourly", "customer", 60),
    ("Zendesk → Salesforce Tickets", "zendesk", "salesforce", "every_12h", "ticket", 150),
]
PAUSED_FLOW = 3  # index in FLOW_TEMPLATES of the flow seeded as paused ...
PAUSED_DAYS_AGO = 17  # ... this many days before the emulator started
RECORD_ERRORS = [
    ("validation_failed", "Field '{field}' is required by {dest}."),
    ("duplicate_record", "A record with the same external id already exists in {dest}."),
    ("reference_missing", "The referenced {entity} does not exist in {dest}."),
    ("value_too_long", "Field '{field}' exceeds the maximum length allowed by {dest}."),
]
RUN_ERRORS = [
    ("upstream_timeout", "{system} did not answer within 120 s; the run was aborted."),
    ("quota_exceeded", "{system} API quota is exhausted; the run was aborted."),
    ("connector_auth_failed", "{system} rejected the stored credentials (HTTP 401)."),
]
DEGRADED_ERROR = ("auth_expired", "{system} rejected the OAuth token: it expired or was revoked.")

LANDED_PER_RUN = 20  # canonical records a finished triggered run updates, and as many it inserts (at most)
TICK_SECONDS = 0.5  # how often runs in progress are checked for events, in real time
log = logging.getLogger("apixx_emulator.ops")

Emit = Callable[[str, dict, int], None]  # (event type, object, emulator time in ms)


def new_id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice(ID_ALPHABET) for _ in range(12))


def iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else iso_s(ms)


@dataclass
class Connector:
    id: str
    name: str
    system: str
    status: str = "connected"
    last_verified_ms: int | None = None
    last_error: dict | None = None
    degraded_since_ms: int | None = None

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "system": self.system, "status": self.status,
                "last_verified_at": iso_or_none(self.last_verified_ms), "last_error": self.last_error}


@dataclass
class Flow:
    id: str
    name: str
    source: str
    destination: str
    schedule: str
    entity: str
    volume: int
    created_ms: int
    updated_ms: int
    status: str = "active"
    last_run_ms: int | None = None

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "source": self.source,
                "destination": self.destination, "schedule": self.schedule,
                "last_run_at": iso_or_none(self.last_run_ms), "created_at": iso_s(self.created_ms),
                "updated_at": iso_s(self.updated_ms)}

    def next_run_ms(self, now_ms: int) -> int | None:
        step = SCHEDULES[self.schedule] * 1000
        return None if self.status == "paused" else (now_ms // step + 1) * step


@dataclass
class Outcome:
    status: str
    total_ms: int  # from started_at (accepted) to finished_at
    processed: int
    failed: int = 0
    errors: list[dict] = field(default_factory=list)


@dataclass
class Run:
    id: str
    flow_id: str
    trigger: str
    retry_of: str | None
    started_ms: int  # when the run was accepted (it is `queued` from then)
    queue_ms: int
    outcome: Outcome
    announced: str = "queued"  # the last phase an event has been emitted for

    @property
    def running_ms(self) -> int:
        return self.started_ms + self.queue_ms

    @property
    def finished_ms(self) -> int:
        return self.started_ms + self.outcome.total_ms

    def phase(self, now_ms: int) -> str:
        if now_ms < self.running_ms:
            return "queued"
        return "running" if now_ms < self.finished_ms else self.outcome.status

    def view(self, now_ms: int, detail: bool = False) -> dict[str, Any]:
        status, o = self.phase(now_ms), self.outcome
        done = status in TERMINAL
        if done:
            processed = o.processed
        elif status == "running":  # counts grow while it runs; failures are tallied at the end
            processed = o.processed * (now_ms - self.running_ms) // max(1, self.finished_ms - self.running_ms)
        else:
            processed = 0
        body = {"id": self.id, "flow_id": self.flow_id, "status": status, "trigger": self.trigger,
                "retry_of": self.retry_of, "started_at": iso_s(self.started_ms),
                "finished_at": iso_s(self.finished_ms) if done else None,
                "duration_ms": o.total_ms if done else None,
                "records_processed": processed, "records_failed": o.failed if done else 0}
        if detail:
            body["errors"] = [dict(e) for e in o.errors] if done else []
        return body

    def sort_key(self) -> tuple[int, str]:
        return (self.started_ms, self.id)


class OpsState:
    """One tenant's flows, connectors and runs in one environment. Reads and actions take the
    emulator's `now` (ms); runs in progress are brought up to date (and their events emitted)
    whenever the state is read or ticked."""

    def __init__(self, seed: int, tenant: str, env: str, now_ms: int, emit: Emit):
        self.tenant, self.env, self.emit = tenant, env, emit
        self.lock = threading.RLock()
        self.flows: dict[str, Flow] = {}
        self.connectors: dict[str, Connector] = {}
        self.runs: dict[str, Run] = {}
        self.live: list[Run] = []  # runs not yet announced as finished
        self.forced: list[dict] = []  # outcomes the control plane asked for, used by the next runs
        seed_history(self, random.Random(f"{seed}/ops/{tenant}/{env}"), now_ms)
        self.rng = random.Random(f"{seed}/ops-live/{tenant}/{env}")  # runs created after startup

    # -- lookups -------------------------------------------------------------------------
    def flow(self, flow_id: str) -> Flow:
        return self._get(self.flows, flow_id, "flow")

    def run(self, run_id: str) -> Run:
        return self._get(self.runs, run_id, "run")

    def connector(self, connector_id: str) -> Connector:
        return self._get(self.connectors, connector_id, "connector")

    @staticmethod
    def _get(table: dict, object_id: str, kind: str) -> Any:
        found = table.get(object_id)
        if found is None:
            raise NotFound(f"No {kind} with id '{object_id}'.")
        return found

    def connectors_of(self, flow: Flow) -> tuple[Connector, Connector]:
        by_system = {c.system: c for c in self.connectors.values()}
        return by_system[flow.source], by_system[flow.destination]

    # -- views ---------------------------------------------------------------------------
    def flow_detail(self, flow: Flow, now_ms: int) -> dict[str, Any]:
        source, destination = self.connectors_of(flow)
        return {**flow.view(), "connectors": {"source": source.view(), "destination": destination.view()},
                "schedule_detail": {"interval_seconds": SCHEDULES[flow.schedule], "timezone": "UTC",
                                    "next_run_at": iso_or_none(flow.next_run_ms(now_ms))}}

    def sorted_flows(self) -> list[Flow]:
        return sorted(self.flows.values(), key=lambda f: f.id)

    def sorted_connectors(self) -> list[Connector]:
        return sorted(self.connectors.values(), key=lambda c: c.id)

    def sorted_runs(self, flow_id: str | None = None, status: str | None = None, from_ms: int | None = None,
                    to_ms: int | None = None, now_ms: int = 0) -> list[Run]:
        runs = sorted(self.runs.values(), key=Run.sort_key)
        return [r for r in runs if (flow_id is None or r.flow_id == flow_id)
                and (status is None or r.phase(now_ms) == status)
                and (from_ms is None or r.started_ms >= from_ms) and (to_ms is None or r.started_ms < to_ms)]

    # -- time ----------------------------------------------------------------------------
    def tick(self, now_ms: int) -> None:
        """Emit the events of every run that changed phase since it was last announced."""
        with self.lock:
            for run in sorted(self.live, key=Run.sort_key):
                phase = run.phase(now_ms)
                if phase == run.announced:
                    continue
                if run.announced == "queued":
                    self.emit("run.started", run.view(run.running_ms, detail=True), run.running_ms)
                if phase in TERMINAL:
                    self.emit(f"run.{phase}", run.view(run.finished_ms, detail=True), run.finished_ms)
                    self.live.remove(run)
                run.announced = phase

    # -- actions -------------------------------------------------------------------------
    def pause(self, flow_id: str, now_ms: int) -> dict[str, Any]:
        flow = self.flow(flow_id)
        if flow.status == "paused":
            raise Conflict(f"Flow '{flow_id}' is already paused.")
        flow.status, flow.updated_ms = "paused", now_ms
        self.emit("flow.paused", flow.view(), now_ms)
        return flow.view()

    def resume(self, flow_id: str, now_ms: int) -> dict[str, Any]:
        flow = self.flow(flow_id)
        if flow.status == "active":
            raise Conflict(f"Flow '{flow_id}' is already active; only a paused flow can be resumed.")
        flow.status, flow.updated_ms = "active", now_ms
        return flow.view()

    def trigger(self, flow_id: str, now_ms: int, trigger: str = "manual", retry_of: str | None = None) -> Run:
        flow = self.flow(flow_id)
        if flow.status == "paused":
            what = "retried" if retry_of else "triggered"
            raise Conflict(f"Flow '{flow_id}' is paused; resume it before a run can be {what}.")
        started = now_ms // 1000 * 1000
        run = Run(new_id(self.rng, "run_"), flow.id, trigger, retry_of, started,
                  self.rng.randint(*QUEUE_MS), self._next_outcome(flow, now_ms))
        self._add(run)
        self.live.append(run)
        return run

    def retry(self, run_id: str, now_ms: int) -> Run:
        old = self.run(run_id)
        status = old.phase(now_ms)
        if status not in ("failed", "partial"):
            raise Conflict(f"Run '{run_id}' is {status}; only a failed or partial run can be retried.")
        return self.trigger(old.flow_id, now_ms, trigger="retry", retry_of=old.id)

    def verify(self, connector_id: str, now_ms: int) -> dict[str, Any]:
        connector = self.connector(connector_id)
        if connector.status != "connected":
            return {"status": "error", "error": dict(connector.last_error or {
                "code": "connector_error", "message": f"{DISPLAY[connector.system]} link is not healthy."})}
        connector.last_verified_ms = now_ms
        return {"status": "ok"}

    def degrade(self, connector_id: str, now_ms: int, code: str | None, message: str | None) -> dict[str, Any]:
        connector = self.connector(connector_id)
        default_code, default_message = DEGRADED_ERROR
        connector.status, connector.degraded_since_ms = "degraded", now_ms
        connector.last_error = {"code": code or default_code,
                                "message": message or default_message.format(system=DISPLAY[connector.system])}
        self.emit("connector.degraded", connector.view(), now_ms)
        return connector.view()

    def restore(self, connector_id: str, now_ms: int) -> dict[str, Any]:
        connector = self.connector(connector_id)
        connector.status, connector.last_error, connector.degraded_since_ms = "connected", None, None
        connector.last_verified_ms = now_ms
        return connector.view()

    # -- internals -----------------------------------------------------------------------
    def _add(self, run: Run) -> None:
        self.runs[run.id] = run
        flow = self.flows[run.flow_id]
        flow.last_run_ms = max(flow.last_run_ms or 0, run.started_ms)

    def _next_outcome(self, flow: Flow, at_ms: int) -> Outcome:
        for i, wish in enumerate(self.forced):
            if wish.get("flow_id") in (None, flow.id):
                del self.forced[i]
                return forced_outcome(self.rng, self, flow, wish)
        return plan_outcome(self.rng, self, flow, at_ms, TRIGGERED_MS)


def plan_outcome(rng: random.Random, state: OpsState, flow: Flow, at_ms: int, span: tuple[int, int]) -> Outcome:
    """A realistic outcome: mostly succeeded, some partial, a few failed; a flow whose connector
    is degraded fails with the connector's error."""
    broken = [c for c in state.connectors_of(flow) if c.degraded_since_ms is not None and c.degraded_since_ms <= at_ms]
    roll = rng.random()
    status = "failed" if broken or roll >= 0.96 else "partial" if roll >= 0.87 else "succeeded"
    return make_outcome(rng, flow, status, rng.randint(*span), broken[0] if broken else None)


def forced_outcome(rng: random.Random, state: OpsState, flow: Flow, wish: dict) -> Outcome:
    total_ms = int(wish["duration_seconds"] * 1000) if wish.get("duration_seconds") else rng.randint(*TRIGGERED_MS)
    outcome = make_outcome(rng, flow, wish["status"], total_ms, None)
    outcome.total_ms = max(total_ms, QUEUE_MS[1] + 1000)  # it still queues, then runs
    if wish.get("records_processed") is not None:
        outcome.processed = wish["records_processed"]
    return outcome


def make_outcome(rng: random.Random, flow: Flow, status: str, total_ms: int, broken: Connector | None) -> Outcome:
    processed = max(1, int(flow.volume * rng.uniform(0.5, 1.5)))
    if status == "succeeded":
        return Outcome(status, total_ms, processed)
    if status == "partial":
        errors = [record_error(rng, flow) for _ in range(rng.randint(1, min(25, processed)))]
        return Outcome(status, total_ms, processed, len(errors), errors)
    if broken is not None and broken.last_error:
        error = {**broken.last_error, "record_ref": None}
    else:
        code, message = rng.choice(RUN_ERRORS)
        error = {"code": code, "message": message.format(system=DISPLAY[flow.source]), "record_ref": None}
    return Outcome("failed", max(QUEUE_MS[1] + 1000, total_ms // 3), int(processed * rng.uniform(0, 0.6)), 0, [error])


def record_error(rng: random.Random, flow: Flow) -> dict[str, Any]:
    code, message = rng.choice(RECORD_ERRORS)
    text = message.format(field=rng.choice(("email", "sku", "currency", "name", "external_id")),
                          dest=DISPLAY[flow.destination], entity=flow.entity)
    return {"code": code, "message": text, "record_ref": f"{flow.source}:{flow.entity}/{rng.randint(10**4, 10**6)}"}


# --------------------------------------------------------------------------------------------
# Seeded history

def seed_history(state: OpsState, rng: random.Random, now_ms: int) -> None:
    """Connectors, flows and HISTORY_DAYS of finished runs, all before `now_ms`; the same seed
    gives the same ids, statuses and counts (times are relative to `now_ms`)."""
    for system in sorted(DISPLAY):
        connector = Connector(new_id(rng, "con_"), f"{DISPLAY[system]} ({state.tenant})", system,
                              last_verified_ms=now_ms - rng.randint(600, 86400) * 1000)
        state.connectors[connector.id] = connector
    degraded = rng.choice(sorted(state.connectors.values(), key=lambda c: c.system))
    degraded.status, degraded.degraded_since_ms = "degraded", now_ms - rng.randint(20, 40) * 3600_000
    degraded.last_error = {"code": DEGRADED_ERROR[0], "message": DEGRADED_ERROR[1].format(system=DISPLAY[degraded.system])}
    degraded.last_verified_ms = degraded.degraded_since_ms - 3600_000
    for i, (name, source, destination, schedule, entity, volume) in enumerate(FLOW_TEMPLATES):
        created = (now_ms - rng.randint(60, 200) * 86400_000) // 1000 * 1000
        flow = Flow(new_id(rng, "flw_"), name, source, destination, schedule, entity, volume, created, created)
        state.flows[flow.id] = flow
        end = now_ms - SEEDED_MS[1] - 60_000  # every seeded run has finished before `now`
        if i == PAUSED_FLOW:
            end = now_ms - PAUSED_DAYS_AGO * 86400_000
            flow.status, flow.updated_ms = "paused", end // 1000 * 1000
        seed_runs(state, rng, flow, end, now_ms - HISTORY_DAYS * 86400_000, now_ms)


def seed_runs(state: OpsState, rng: random.Random, flow: Flow, end_ms: int, start_ms: int, now_ms: int) -> None:
    step = SCHEDULES[flow.schedule] * 1000
    slots = list(range(end_ms // step * step, start_ms - 1, -step))
    for slot in reversed(slots):
        manual = rng.random() < 0.03
        at = slot + (rng.randint(300, step // 2000) * 1000 if manual else rng.randint(0, 30) * 1000)
        run = seeded_run(state, rng, flow, at, "manual" if manual else "schedule", None, now_ms)
        if run.outcome.status == "failed" and rng.random() < 0.5:
            retry_at = run.finished_ms // 1000 * 1000 + rng.randint(60, 600) * 1000
            seeded_run(state, rng, flow, retry_at, "retry", run.id, now_ms)


def seeded_run(state: OpsState, rng: random.Random, flow: Flow, at_ms: int, trigger: str, retry_of: str | None,
               now_ms: int) -> Run:
    """A finished historical run; one that would not have finished by `now_ms` is planned (the
    random draws stay the same) but left out."""
    outcome = plan_outcome(rng, state, flow, at_ms, SEEDED_MS)
    run = Run(new_id(rng, "run_"), flow.id, trigger, retry_of, at_ms, rng.randint(*QUEUE_MS), outcome,
              announced=outcome.status)
    if run.finished_ms < now_ms:
        state._add(run)
    return run


# --------------------------------------------------------------------------------------------
# Every tenant's ops state

class OpsRegistry:
    """The ops state of each tenant and environment, seeded on first use next to its dataset; a
    finished triggered run lands records in that dataset, as a real flow does, so that
    event-driven syncs have something new to load."""

    def __init__(self, clock: EmulatorClock, dataset: Callable[[str, str], Dataset], seed: Callable[[], int],
                 sink: Emit):
        self.clock, self.dataset, self.seed, self.sink = clock, dataset, seed, sink
        self.states: dict[tuple[str, str], OpsState] = {}
        self.lock = threading.Lock()

    def state_for(self, tenant: str, env: str) -> OpsState:
        dataset = self.dataset(tenant, env)
        with self.lock:
            state = self.states.get((tenant, env))
            if state is None:
                state = OpsState(self.seed(), tenant, env, self.clock.now_ms(), self._emitter(dataset, tenant, env))
                self.states[(tenant, env)] = state
            return state

    def _emitter(self, dataset: Dataset, tenant: str, env: str) -> Emit:
        def emit(event_type: str, data: dict[str, Any], at_ms: int) -> None:
            if event_type in ("run.succeeded", "run.partial"):
                land(dataset, self.states.get((tenant, env)), data)
            self.sink(event_type, data, at_ms)

        return emit

    def tick_all(self) -> None:
        with self.lock:
            states = list(self.states.values())
        now = self.clock.now_ms()
        for state in states:
            state.tick(now)

    def reset(self) -> None:
        with self.lock:
            self.states.clear()

    def run_ticker(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            try:
                self.tick_all()
            except Exception:  # a failed tick must not stop later ones
                log.exception("ops tick failed")


def land(dataset: Dataset, state: OpsState | None, run: dict[str, Any]) -> None:
    flow = state.flows.get(run.get("flow_id")) if state else None
    if flow is None or flow.entity not in ENTITIES:
        return
    count = min(LANDED_PER_RUN, max(1, int(run.get("records_processed") or 0) - int(run.get("records_failed") or 0)))
    dataset.churn(flow.entity, updates=count, inserts=count, tie=False, set_fields=None)

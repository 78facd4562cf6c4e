"""The control plane under /_emulator/, one router: data (reset, churn, ground truth), faults and
bad data, rate limits and the request log, emulator time and ops, webhooks. No key; the gate
lets only local JSON callers in, and every body is checked against the field tables below."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..entities import ENTITY_NAMES
from ..exceptions import NotFound, ValidationError
from ..inputs import BOOL, OBJECT, Field, choice, integer, json_body, number, text
from ..models import Store
from ..models.bad_data import KINDS, MAX_PLAN_COUNT, Plan
from ..models.datasets import MAX_CHURN, MAX_RECORDS_PER_ENTITY, Dataset
from ..models.faults import FAULT_KINDS, MAX_LATENCY_MS, MAX_RETRY_AFTER, FaultConfig
from ..models.ops import TERMINAL, OpsState
from ..models.ratelimit import MAX_RATE_LIMIT
from ..models.store import REQUEST_LOG_MAX, Settings
from ..models.webhooks import EVENTS
from ..timestamps import CURSOR_MODES, PRECISIONS, SINCE_MODES, iso_s, parse_us
from .common import check_entity, json_response

MAX_ADVANCE_SECONDS = 366 * 86400  # emulator time moves at most a year per call
MAX_RUN_SECONDS = 7 * 86400  # a forced run lasts at most a week
SEED = integer(-(2**63), 2**63 - 1)
TENANT = {"tenant": text(100), "env": text(100)}


def no_key_fields(value: dict) -> str | None:
    fixed = sorted({"canonical_id", "updated_at"} & set(value))
    if fixed:
        return f"must not change {', '.join(fixed)} (churn sets updated_at itself)"
    return None if len(value) <= 100 else "must name at most 100 fields"


def timestamp(value: str) -> str | None:
    try:
        parse_us(value)
    except (ValueError, OverflowError):
        return "must be an RFC 3339 timestamp"
    return None


def web_url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else "must be an http:// or https:// URL"


# -- the bodies each route takes (field -> type and bounds) -----------------------------------
RESET_FIELDS = {"seed": SEED, "records_per_entity": integer(1, MAX_RECORDS_PER_ENTITY), "cursor_mode": choice(*CURSOR_MODES),
                "since_mode": choice(*SINCE_MODES), "timestamp_precision": choice(*PRECISIONS)}
CHURN_FIELDS = {**TENANT, "entity": choice(*ENTITY_NAMES, nullable=False),
                **{name: integer(0, MAX_CHURN) for name in ("updates", "inserts", "deletes", "merges")},
                "tie": BOOL, "set": Field("object", check=no_key_fields), "at": text(64, check=timestamp)}
FAULT_FIELDS = {**{f"{kind}_rate": number(0, 1) for kind in FAULT_KINDS}, "latency_ms": number(0, MAX_LATENCY_MS),
                "jitter_ms": number(0, MAX_LATENCY_MS), "retry_after": integer(0, MAX_RETRY_AFTER), "seed": SEED}
LIMIT_FIELDS = {bucket: integer(1, MAX_RATE_LIMIT) for bucket in ("read", "write", "trigger")}
PLAN_FIELDS = {"entity": choice(*ENTITY_NAMES, nullable=False), "kind": choice(*KINDS, nullable=False),
               "count": integer(0, MAX_PLAN_COUNT), "skip": integer(0, MAX_PLAN_COUNT), "always": BOOL, "once": BOOL}
ADVANCE_FIELDS = {"seconds": number(0, MAX_ADVANCE_SECONDS, nullable=False)}
DEGRADE_FIELDS = {"code": text(100), "message": text(500)}
NEXT_RUN_FIELDS = {**TENANT, "flow_id": text(100), "status": choice(*TERMINAL, nullable=False),
                   "duration_seconds": number(0.001, MAX_RUN_SECONDS), "records_processed": integer(0, 10**9)}
SUBSCRIBE_FIELDS = {"url": text(check=web_url), "secret": text(500), "events": Field("texts", hi=20)}
TEST_EVENT_FIELDS = {"type": choice(*EVENTS, nullable=False), "data": OBJECT}

RESET_BODY = json_body(RESET_FIELDS, "reset")
CHURN_BODY = json_body(CHURN_FIELDS, "churn", required=("entity",))
FAULT_BODY = json_body(FAULT_FIELDS, "faults")
LIMIT_BODY = json_body(LIMIT_FIELDS, "limits")
PLAN_BODY = json_body(PLAN_FIELDS, "bad-data", required=("entity", "kind"))
ADVANCE_BODY = json_body(ADVANCE_FIELDS, "time/advance", required=("seconds",))
DEGRADE_BODY = json_body(DEGRADE_FIELDS, "degrade")
NEXT_RUN_BODY = json_body(NEXT_RUN_FIELDS, "ops/next-run", required=("status",))
SUBSCRIBE_BODY = json_body(SUBSCRIBE_FIELDS, "webhooks", required=("url", "secret"))
TEST_EVENT_BODY = json_body(TEST_EVENT_FIELDS, "webhooks/test", required=("type",))
TENANT_QUERY, ENV_QUERY = Query("acme", max_length=100), Query("live", max_length=100)


def dataset_of(store: Store, tenant: str, env: str) -> Dataset:
    """A known tenant's dataset (generated on first use), or 404 naming the known ones."""
    if (tenant, env) not in store.tenants():
        known = ", ".join(f"{t}/{e}" for t, e in store.tenants())
        raise NotFound(f"No dataset for tenant '{tenant[:60]}' env '{env[:60]}'. Known: {known}.")
    return store.dataset(tenant, env)


def build(store: Store) -> APIRouter:
    router = APIRouter(prefix="/_emulator", tags=["control plane"], include_in_schema=False)
    add_data_routes(router, store)
    add_fault_routes(router, store)
    add_ops_routes(router, store)
    add_webhook_routes(router, store)
    return router


# -- data: health, reset, churn, ground truth ---------------------------------------------------
def add_data_routes(router: APIRouter, store: Store) -> None:
    @router.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "settings": store.settings.public()})

    @router.post("/reset")
    async def reset(body: dict[str, Any] = RESET_BODY) -> Response:
        store.reset(**body)
        return json_response({name: getattr(store.settings, name) for name in Settings.RESETTABLE})

    @router.post("/churn")
    async def churn(body: dict[str, Any] = CHURN_BODY) -> Response:
        at = parse_us(body["at"]) if "at" in body else None
        counts = {name: body.get(name, 0) for name in ("updates", "inserts", "deletes", "merges")}

        def work() -> dict:
            dataset = dataset_of(store, body.get("tenant", "acme"), body.get("env", "live"))
            return dataset.churn(body["entity"], counts["updates"], counts["inserts"], body.get("tie", False),
                                 body.get("set"), at, deletes=counts["deletes"], merges=counts["merges"])

        return json_response(await run_in_threadpool(work))  # generating and re-sorting stay off the event loop

    @router.get("/records/{entity}")
    def ground_truth(entity: str, tenant: str = TENANT_QUERY, env: str = ENV_QUERY) -> Response:
        check_entity(entity)  # a sync route: generating and serialising a large table stay off the event loop
        dataset = dataset_of(store, tenant, env)
        with dataset.lock:
            table = dataset.tables[entity]
            return json_response({"entity": entity, "tenant": tenant, "env": env, "count": len(table.records),
                                  "data": table.records, "gone": table.gone_view()})


# -- faults, bad data, rate limits, the request log -------------------------------------------
def add_fault_routes(router: APIRouter, store: Store) -> None:
    @router.post("/faults")
    async def set_faults(body: dict[str, Any] = FAULT_BODY) -> Response:
        try:
            store.faults.configure(FaultConfig.from_json(body))
        except (TypeError, ValueError) as err:
            raise ValidationError(f"faults: {err}.") from None
        return json_response(store.faults.describe())

    @router.get("/faults")
    async def get_faults() -> Response:
        return json_response(store.faults.describe())

    @router.delete("/faults")
    async def clear_faults() -> Response:
        store.faults.configure(FaultConfig())
        return json_response(store.faults.describe())

    @router.post("/bad-data")
    async def add_plan(body: dict[str, Any] = PLAN_BODY) -> Response:
        try:
            store.bad_data.add(Plan.from_json(body))
        except (TypeError, ValueError) as err:
            raise ValidationError(f"bad-data: {err}.") from None
        return json_response(store.bad_data.describe())

    @router.get("/bad-data")
    async def list_plans() -> Response:
        return json_response(store.bad_data.describe())

    @router.delete("/bad-data")
    async def clear_plans() -> Response:
        store.bad_data.clear()
        return json_response(store.bad_data.describe())

    @router.post("/limits")
    async def set_limits(body: dict[str, Any] = LIMIT_BODY) -> Response:
        store.limiter.limits.update(body)
        store.limiter.clear()
        return json_response(store.limiter.limits)

    @router.get("/stats")
    async def stats(limit: int = Query(1000, ge=0, le=REQUEST_LOG_MAX)) -> Response:
        log = list(store.request_log)
        counters = [{"route": r, "status": s, "key_id": k, "count": c} for (r, s, k), c in store.counters.items()]
        return json_response({"total": len(log), "by_route": Counter(e["route"] for e in log),
                              "by_status": Counter(str(e["status"]) for e in log), "counters": counters,
                              "requests": log[-limit:] if limit else [], "faults": store.faults.describe()})

    @router.delete("/stats")
    async def clear_stats() -> Response:
        store.request_log.clear()
        store.counters.clear()
        return json_response({"cleared": True})


# -- emulator time and the ops model ------------------------------------------------------------
def add_ops_routes(router: APIRouter, store: Store) -> None:
    async def state_of(tenant: str, env: str) -> tuple[OpsState, int]:
        await run_in_threadpool(dataset_of, store, tenant, env)  # 404 for an unknown tenant; generated off the loop
        state, now = store.ops.state_for(tenant, env), store.clock.now_ms()
        state.tick(now)
        return state, now

    @router.get("/time")
    async def get_time() -> Response:
        return json_response(store.clock.describe())

    @router.post("/time/advance")
    async def advance_time(body: dict[str, Any] = ADVANCE_BODY) -> Response:
        await run_in_threadpool(store.advance_time, body["seconds"])  # it waits for webhook answers
        return json_response({**store.clock.describe(), "advanced_seconds": body["seconds"]})

    @router.get("/ops/{kind}")
    async def ops_truth(kind: str, tenant: str = TENANT_QUERY, env: str = ENV_QUERY) -> Response:
        state, now = await state_of(tenant, env)
        views = {"flows": lambda: [state.flow_detail(f, now) for f in state.sorted_flows()],
                 "connectors": lambda: [c.view() for c in state.sorted_connectors()],
                 "runs": lambda: [r.view(now, detail=True) for r in state.sorted_runs(now_ms=now)]}
        if kind not in views:
            raise NotFound(f"No ops ground truth '{kind[:60]}'; use flows, runs or connectors.")
        with state.lock:
            data = views[kind]()
        return json_response({"kind": kind, "tenant": tenant, "env": env, "count": len(data), "now": iso_s(now), "data": data})

    @router.post("/ops/connectors/{connector_id}/degrade")
    async def degrade(connector_id: str, tenant: str = TENANT_QUERY, env: str = ENV_QUERY,
                      body: dict[str, Any] = DEGRADE_BODY) -> Response:
        state, now = await state_of(tenant, env)
        with state.lock:
            return json_response(state.degrade(connector_id, now, body.get("code"), body.get("message")))

    @router.post("/ops/connectors/{connector_id}/restore")
    async def restore(connector_id: str, tenant: str = TENANT_QUERY, env: str = ENV_QUERY) -> Response:
        state, now = await state_of(tenant, env)
        with state.lock:
            return json_response(state.restore(connector_id, now))

    @router.post("/ops/next-run")
    async def next_run(body: dict[str, Any] = NEXT_RUN_BODY) -> Response:
        state, _ = await state_of(body.get("tenant", "acme"), body.get("env", "live"))
        with state.lock:
            if body.get("flow_id") is not None:
                state.flow(body["flow_id"])
            wish = {k: body.get(k) for k in ("flow_id", "status", "duration_seconds", "records_processed")}
            state.forced.append(wish)
            return json_response({"queued": len(state.forced), "next": wish})


# -- webhook subscriptions and deliveries --------------------------------------------------------
def add_webhook_routes(router: APIRouter, store: Store) -> None:
    hooks = store.webhooks

    @router.get("/webhooks")
    async def list_subscriptions() -> Response:
        return json_response({"data": hooks.subscriptions_view()})

    @router.post("/webhooks")
    async def subscribe(body: dict[str, Any] = SUBSCRIBE_BODY) -> Response:
        events = body.get("events") or ["*"]
        unknown = [e for e in events if e != "*" and e not in EVENTS]
        if unknown:
            raise ValidationError(f"Unknown event(s) {unknown}; known: *, {', '.join(EVENTS)}.")
        return json_response(hooks.subscribe(body["url"], body["secret"], events).view(), 201)

    @router.delete("/webhooks/{sub_id}")
    async def unsubscribe(sub_id: str) -> Response:
        hooks.unsubscribe(sub_id)
        return json_response({"deleted": sub_id})

    @router.get("/webhooks/deliveries")
    async def deliveries(event: str | None = Query(None), state: str | None = Query(None),
                         subscription_id: str | None = Query(None)) -> Response:
        found = hooks.deliveries_view(event, state, subscription_id)
        return json_response({"count": len(found), "data": found})

    @router.post("/webhooks/flush")
    async def flush() -> Response:
        await run_in_threadpool(hooks.settle)  # it waits for the answers of the attempts it starts
        return json_response({"pending": hooks.pending()})

    @router.post("/webhooks/test")
    async def test_event(body: dict[str, Any] = TEST_EVENT_BODY) -> Response:
        hooks.on_event(body["type"], body.get("data") or {}, store.clock.now_ms())
        return json_response({"fired": body["type"]}, 202)

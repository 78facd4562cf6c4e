"""The control plane under /_emulator/: reset, churn, faults, ground truth and stats (no API key)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from . import bad_data
from .data_api import check_entity, json_response
from .entities import ENTITY_NAMES
from .errors import ApiError
from .faults import FAULT_KINDS, MAX_LATENCY_MS, MAX_RETRY_AFTER, FaultConfig
from .inputs import BOOL, Field, choice, integer, json_body, number, text
from .models import (
    MAX_CHURN,
    MAX_RATE_LIMIT,
    MAX_RECORDS_PER_ENTITY,
    REQUEST_LOG_MAX,
    Dataset,
    Store,
)
from .timestamps import CURSOR_MODES, PRECISIONS, SINCE_MODES, parse_us


def dataset_of(store: Store, tenant: str, env: str) -> Dataset:
    if (tenant, env) not in store.tenants():
        known = ", ".join(f"{t}/{e}" for t, e in store.tenants())
        raise ApiError(404, "not_found", f"No dataset for tenant '{tenant[:60]}' env '{env[:60]}'. Known: {known}.")
    return store.dataset(tenant, env)


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


TENANT = {"tenant": text(100), "env": text(100)}
RESET_FIELDS = {
    "seed": integer(-(2**63), 2**63 - 1),
    "records_per_entity": integer(1, MAX_RECORDS_PER_ENTITY),
    "cursor_mode": choice(*CURSOR_MODES),
    "since_mode": choice(*SINCE_MODES),
    "timestamp_precision": choice(*PRECISIONS),
}
CHURN_FIELDS = {
    **TENANT,
    "entity": choice(*ENTITY_NAMES, nullable=False),
    **{name: integer(0, MAX_CHURN) for name in ("updates", "inserts", "deletes", "merges")},
    "tie": BOOL,
    "set": Field("object", check=no_key_fields),
    "at": text(64, check=timestamp),
}
FAULT_FIELDS = {
    **{f"{kind}_rate": number(0, 1) for kind in FAULT_KINDS},
    "latency_ms": number(0, MAX_LATENCY_MS),
    "jitter_ms": number(0, MAX_LATENCY_MS),
    "retry_after": integer(0, MAX_RETRY_AFTER),
    "seed": integer(-(2**63), 2**63 - 1),
}
LIMIT_FIELDS = {bucket: integer(1, MAX_RATE_LIMIT) for bucket in ("read", "write", "trigger")}
RESET_BODY = json_body(RESET_FIELDS, "reset")
CHURN_BODY = json_body(CHURN_FIELDS, "churn", required=("entity",))
FAULT_BODY = json_body(FAULT_FIELDS, "faults")
LIMIT_BODY = json_body(LIMIT_FIELDS, "limits")


def build(store: Store) -> APIRouter:
    router = APIRouter(prefix="/_emulator", tags=["control plane"], include_in_schema=False)

    @router.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "settings": {
            k: v for k, v in vars(store.settings).items() if k not in ("keys", "webhooks")}})

    @router.post("/reset")
    async def reset(body: dict[str, Any] = RESET_BODY) -> Response:
        store.reset(**body)
        for hook in store.extensions.get("on_reset", []):
            hook()
        return json_response({name: getattr(store.settings, name) for name in store.RESETTABLE})

    @router.post("/churn")
    async def churn(body: dict[str, Any] = CHURN_BODY) -> Response:
        at = parse_us(body["at"]) if "at" in body else None
        counts = {name: body.get(name, 0) for name in ("updates", "inserts", "deletes", "merges")}

        def work() -> dict:
            dataset = dataset_of(store, body.get("tenant", "acme"), body.get("env", "live"))
            return dataset.churn(body["entity"], counts["updates"], counts["inserts"], body.get("tie", False),
                                 body.get("set"), at, deletes=counts["deletes"], merges=counts["merges"])

        return json_response(await run_in_threadpool(work))  # generation and re-sorting stay off the event loop

    @router.post("/faults")
    async def set_faults(body: dict[str, Any] = FAULT_BODY) -> Response:
        try:
            store.faults.configure(FaultConfig.from_json(body))
        except (TypeError, ValueError) as err:
            raise ApiError(422, "validation_error", f"faults: {err}.") from None
        return json_response(store.faults.describe())

    @router.get("/faults")
    async def get_faults() -> Response:
        return json_response(store.faults.describe())

    @router.delete("/faults")
    async def clear_faults() -> Response:
        store.faults.configure(FaultConfig())
        return json_response(store.faults.describe())

    @router.get("/records/{entity}")
    def ground_truth(entity: str, tenant: str = Query("acme"), env: str = Query("live")) -> Response:
        check_entity(entity)  # a sync route: generating and serialising a large table stays off the event loop
        dataset = dataset_of(store, tenant, env)
        with dataset.lock:
            table = dataset.tables[entity]
            return json_response({"entity": entity, "tenant": tenant, "env": env, "count": len(table.records),
                                  "data": table.records, "gone": table.gone_view()})

    @router.get("/stats")
    async def stats(limit: int = Query(1000, ge=0, le=REQUEST_LOG_MAX)) -> Response:
        log = list(store.request_log)
        by_route = Counter(e["route"] for e in log)
        by_status = Counter(str(e["status"]) for e in log)
        counters = [{"route": r, "status": s, "key_id": k, "count": c} for (r, s, k), c in store.counters.items()]
        return json_response({"total": len(log), "by_route": by_route, "by_status": by_status,
                              "counters": counters, "requests": log[-limit:] if limit else [],
                              "faults": store.faults.describe()})

    @router.delete("/stats")
    async def clear_stats() -> Response:
        store.request_log.clear()
        store.counters.clear()
        return json_response({"cleared": True})

    @router.post("/limits")
    async def set_limits(body: dict[str, Any] = LIMIT_BODY) -> Response:
        store.limiter.limits.update(body)
        store.limiter.clear()
        return json_response(store.limiter.limits)

    router.include_router(bad_data.build(store))  # POST|GET|DELETE /_emulator/bad-data
    return router

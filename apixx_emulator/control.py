"""The control plane under /_emulator/: reset, churn, faults, ground truth and stats (no API key)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response

from . import bad_data
from .data_api import check_entity, json_response
from .errors import ApiError
from .faults import FaultConfig
from .models import Store
from .timestamps import CURSOR_MODES, PRECISIONS, SINCE_MODES, parse_us


def dataset_of(store: Store, tenant: str, env: str):
    if (tenant, env) not in store.tenants():
        known = ", ".join(f"{t}/{e}" for t, e in store.tenants())
        raise ApiError(404, "not_found", f"No dataset for tenant '{tenant}' env '{env}'. Known: {known}.")
    return store.dataset(tenant, env)


def build(store: Store) -> APIRouter:
    router = APIRouter(prefix="/_emulator", tags=["control plane"], include_in_schema=False)

    @router.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "settings": {
            k: v for k, v in vars(store.settings).items() if k not in ("keys", "webhooks")}})

    @router.post("/reset")
    async def reset(body: dict[str, Any] = Body(default_factory=dict)) -> Response:
        seed, n = body.get("seed"), body.get("records_per_entity")
        if (seed is not None and not isinstance(seed, int)) or (n is not None and (not isinstance(n, int) or n < 1)):
            raise ApiError(422, "validation_error", "'seed' must be an integer and 'records_per_entity' a positive integer.")
        modes = {"cursor_mode": CURSOR_MODES, "since_mode": SINCE_MODES, "timestamp_precision": tuple(PRECISIONS)}
        for name, allowed in modes.items():
            if body.get(name) is not None and body[name] not in allowed:
                raise ApiError(422, "validation_error", f"'{name}' must be one of {', '.join(allowed)}.")
        store.reset(seed=seed, records_per_entity=n, **{name: body.get(name) for name in modes})
        for hook in store.extensions.get("on_reset", []):
            hook()
        return json_response({name: getattr(store.settings, name) for name in store.RESETTABLE})

    @router.post("/churn")
    async def churn(body: dict[str, Any] = Body(...)) -> Response:
        entity = body.get("entity", "")
        check_entity(entity)
        counts = {name: body.get(name, 0) for name in ("updates", "inserts", "deletes", "merges")}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ApiError(422, "validation_error", f"'{name}' must be a non-negative integer.")
        at = body.get("at")
        if at is not None:
            try:
                at = parse_us(at)
            except (TypeError, ValueError, AttributeError, OverflowError):
                raise ApiError(422, "validation_error", "'at' must be an RFC 3339 timestamp.") from None
        dataset = dataset_of(store, body.get("tenant", "acme"), body.get("env", "live"))
        result = dataset.churn(entity, counts["updates"], counts["inserts"], bool(body.get("tie", False)), body.get("set"),
                               at, deletes=counts["deletes"], merges=counts["merges"])
        return json_response(result)

    @router.post("/faults")
    async def set_faults(body: dict[str, Any] = Body(...)) -> Response:
        try:
            store.faults.configure(FaultConfig.from_json(body))
        except (TypeError, ValueError) as err:
            raise ApiError(422, "validation_error", str(err)) from None
        return json_response(store.faults.describe())

    @router.get("/faults")
    async def get_faults() -> Response:
        return json_response(store.faults.describe())

    @router.delete("/faults")
    async def clear_faults() -> Response:
        store.faults.configure(FaultConfig())
        return json_response(store.faults.describe())

    @router.get("/records/{entity}")
    async def ground_truth(entity: str, tenant: str = Query("acme"), env: str = Query("live")) -> Response:
        check_entity(entity)
        dataset = dataset_of(store, tenant, env)
        with dataset.lock:
            table = dataset.tables[entity]
            return json_response({"entity": entity, "tenant": tenant, "env": env, "count": len(table.records),
                                  "data": table.records, "gone": table.gone_view()})

    @router.get("/stats")
    async def stats(limit: int = Query(1000, ge=0)) -> Response:
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
    async def set_limits(body: dict[str, Any] = Body(...)) -> Response:
        for bucket, value in body.items():
            if bucket not in store.limiter.limits or not isinstance(value, int) or value < 1:
                raise ApiError(422, "validation_error", f"Unknown bucket or bad limit: {bucket}={value!r}.")
            store.limiter.limits[bucket] = value
        store.limiter.clear()
        return json_response(store.limiter.limits)

    router.include_router(bad_data.build(store))  # POST|GET|DELETE /_emulator/bad-data
    return router

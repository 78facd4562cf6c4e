"""The ops API routes under /v1 (flows, runs, connectors, api-keys) and their control plane: thin over ops_models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .clock import EmulatorClock, hooks
from .control import dataset_of
from .data_api import ErrorEnvelope, dataset_for, json_response, require_scope
from .errors import ApiError
from .inputs import choice, integer, json_body, number, text
from .models import Store
from .ops_models import RUN_STATUSES, TERMINAL, OpsState, Run
from .timestamps import iso_s, parse_us

DEFAULT_LIMIT = 25  # the ops lists' default page size
MAX_LIMIT = 100  # the ops lists' largest page size
READ, WRITE = "flows:read", "flows:write"
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorEnvelope} for s in (401, 403, 404, 422, 429)}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 409: {"model": ErrorEnvelope}}


# -- OpenAPI shapes (the handlers build plain dicts; these document them) --------------------
class ConnectorError(BaseModel):
    code: str
    message: str


class Connector(BaseModel):
    id: str
    name: str
    system: str
    status: str
    last_verified_at: str | None
    last_error: ConnectorError | None


class Flow(BaseModel):
    id: str
    name: str
    status: str
    source: str
    destination: str
    schedule: str
    last_run_at: str | None
    created_at: str
    updated_at: str


class FlowConnectors(BaseModel):
    source: Connector
    destination: Connector


class ScheduleDetail(BaseModel):
    interval_seconds: int
    timezone: str
    next_run_at: str | None


class FlowDetail(Flow):
    connectors: FlowConnectors
    schedule_detail: ScheduleDetail


class RunOut(BaseModel):
    id: str
    flow_id: str
    status: str
    trigger: str
    retry_of: str | None
    started_at: str
    finished_at: str | None
    duration_ms: int | None
    records_processed: int
    records_failed: int


class RunError(BaseModel):
    code: str
    message: str
    record_ref: str | None


class RunDetail(RunOut):
    errors: list[RunError]


class Meta(BaseModel):
    total: int
    has_more: bool


class FlowList(BaseModel):
    data: list[Flow]
    meta: Meta


class RunList(BaseModel):
    data: list[RunOut]
    meta: Meta


class ConnectorList(BaseModel):
    data: list[Connector]
    meta: Meta


class RunCreated(BaseModel):
    run_id: str


class VerifyResult(BaseModel):
    status: str
    error: ConnectorError | None = None


class RotatedKey(BaseModel):
    id: str
    secret: str
    rotated_at: str


# -- helpers ----------------------------------------------------------------------------------
LIMIT = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"page size, 1..{MAX_LIMIT}")
AFTER = Query(None, description="id of the last item of the previous page")


def paged(items: list, sort_key: Callable, render: Callable, limit: int, after: str | None,
          table: dict, kind: str) -> dict[str, Any]:
    """One page of `items` (already in API order) after the item whose id is `after`."""
    start = 0
    if after is not None:
        anchor = table.get(after)
        if anchor is None:
            raise ApiError(422, "validation_error", f"Parameter 'starting_after': no {kind} with id '{after}'.")
        start = next((i for i, item in enumerate(items) if sort_key(item) > sort_key(anchor)), len(items))
    page = items[start:start + limit]
    return {"data": [render(item) for item in page],
            "meta": {"total": len(items), "has_more": start + limit < len(items)}}


def time_param(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return -(-parse_us(value) // 1000)  # started_at (whole ms) >= from, < to: compare instants
    except ValueError:
        raise ApiError(422, "validation_error", f"Parameter '{name}' is not an RFC 3339 timestamp: {value!r}.") from None


def status_param(value: str | None) -> str | None:
    if value is not None and value not in RUN_STATUSES:
        raise ApiError(422, "validation_error", f"Parameter 'status' must be one of {', '.join(RUN_STATUSES)}; got {value!r}.")
    return value


# -- the API ----------------------------------------------------------------------------------
def build_api(store: Store, clock: EmulatorClock, state_for: Callable[[str, str], OpsState]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["ops"])

    async def context(request: Request, scope: str) -> tuple[OpsState, int]:
        key = require_scope(request, scope)
        await dataset_for(store, key)  # generated off the event loop on a tenant's first request
        state, now = state_for(key.tenant, key.env), clock.now_ms()
        state.tick(now)
        return state, now

    @router.get("/flows", response_model=None, responses={200: {"model": FlowList}, **ERRORS},
                summary="List flows, by id")
    async def list_flows(request: Request, limit: int = LIMIT, starting_after: str | None = AFTER) -> Response:
        state, _ = await context(request, READ)
        with state.lock:
            body = paged(state.sorted_flows(), lambda f: f.id, lambda f: f.view(), limit, starting_after,
                         state.flows, "flow")
        return json_response(body)

    @router.get("/flows/{flow_id}", response_model=None, responses={200: {"model": FlowDetail}, **ERRORS},
                summary="Retrieve a flow with its connectors and schedule")
    async def get_flow(request: Request, flow_id: str) -> Response:
        state, now = await context(request, READ)
        with state.lock:
            return json_response(state.flow_detail(state.flow(flow_id), now))

    @router.post("/flows/{flow_id}/pause", response_model=None, responses={200: {"model": Flow}, **ACTION_ERRORS},
                 summary="Pause a flow (409 if already paused)")
    async def pause_flow(request: Request, flow_id: str) -> Response:
        state, now = await context(request, WRITE)
        with state.lock:
            return json_response(state.pause(flow_id, now))

    @router.post("/flows/{flow_id}/resume", response_model=None, responses={200: {"model": Flow}, **ACTION_ERRORS},
                 summary="Resume a paused flow (409 if active)")
    async def resume_flow(request: Request, flow_id: str) -> Response:
        state, now = await context(request, WRITE)
        with state.lock:
            return json_response(state.resume(flow_id, now))

    @router.post("/flows/{flow_id}/trigger", status_code=202, response_model=None,
                 responses={202: {"model": RunCreated}, **ACTION_ERRORS}, summary="Start a run now (409 if paused)")
    async def trigger_flow(request: Request, flow_id: str) -> Response:
        state, now = await context(request, WRITE)
        with state.lock:
            return json_response({"run_id": state.trigger(flow_id, now).id}, 202)

    @router.get("/runs", response_model=None, responses={200: {"model": RunList}, **ERRORS},
                summary="List runs, by started_at then id")
    async def list_runs(
        request: Request,
        limit: int = LIMIT,
        starting_after: str | None = AFTER,
        flow_id: str | None = Query(None, description="only this flow's runs"),
        status: str | None = Query(None, description=f"one of {', '.join(RUN_STATUSES)}"),
        from_: str | None = Query(None, alias="from", description="RFC 3339; started_at >= from"),
        to: str | None = Query(None, description="RFC 3339; started_at < to"),
    ) -> Response:
        wanted, start, end = status_param(status), time_param("from", from_), time_param("to", to)
        state, now = await context(request, READ)
        with state.lock:
            runs = state.sorted_runs(flow_id, wanted, start, end, now)
            body = paged(runs, Run.sort_key, lambda r: r.view(now), limit, starting_after, state.runs, "run")
        return json_response(body)

    @router.get("/runs/{run_id}", response_model=None, responses={200: {"model": RunDetail}, **ERRORS},
                summary="Retrieve a run with its errors")
    async def get_run(request: Request, run_id: str) -> Response:
        state, now = await context(request, READ)
        with state.lock:
            return json_response(state.run(run_id).view(now, detail=True))

    @router.post("/runs/{run_id}/retry", status_code=202, response_model=None,
                 responses={202: {"model": RunCreated}, **ACTION_ERRORS},
                 summary="Retry a failed or partial run (409 otherwise)")
    async def retry_run(request: Request, run_id: str) -> Response:
        state, now = await context(request, WRITE)
        with state.lock:
            return json_response({"run_id": state.retry(run_id, now).id}, 202)

    @router.get("/connectors", response_model=None, responses={200: {"model": ConnectorList}, **ERRORS},
                summary="List connectors, by id")
    async def list_connectors(request: Request, limit: int = LIMIT, starting_after: str | None = AFTER) -> Response:
        state, _ = await context(request, READ)
        with state.lock:
            body = paged(state.sorted_connectors(), lambda c: c.id, lambda c: c.view(), limit, starting_after,
                         state.connectors, "connector")
        return json_response(body)

    @router.get("/connectors/{connector_id}", response_model=None, responses={200: {"model": Connector}, **ERRORS},
                summary="Retrieve a connector")
    async def get_connector(request: Request, connector_id: str) -> Response:
        state, _ = await context(request, READ)
        with state.lock:
            return json_response(state.connector(connector_id).view())

    @router.post("/connectors/{connector_id}/verify", response_model=None,
                 responses={200: {"model": VerifyResult}, **ERRORS}, summary="Test a connector's credentialed link")
    async def verify_connector(request: Request, connector_id: str) -> Response:
        state, now = await context(request, WRITE)
        with state.lock:
            return json_response(state.verify(connector_id, now))

    @router.post("/api-keys/{key_id}/rotate", response_model=None, responses={200: {"model": RotatedKey}, **ERRORS},
                 summary="Issue a new secret for a key; the old one stops working at once")
    async def rotate_key(request: Request, key_id: str) -> Response:
        caller = require_scope(request, WRITE)
        target = store.keys.by_id.get(key_id)
        if target is None or target.tenant != caller.tenant or target.env != caller.env:
            raise ApiError(404, "not_found", f"No API key with id '{key_id}'.")
        secret = store.keys.rotate(key_id, caller.tenant)
        return json_response({"id": key_id, "secret": secret, "rotated_at": iso_s(clock.now_ms())})

    return router


# -- the control plane ------------------------------------------------------------------------
MAX_ADVANCE_SECONDS = 366 * 86400  # emulator time moves at most a year per call
MAX_RUN_SECONDS = 7 * 86400  # a forced run lasts at most a week
ADVANCE_FIELDS = {"seconds": number(0, MAX_ADVANCE_SECONDS, nullable=False)}
DEGRADE_FIELDS = {"code": text(100), "message": text(500)}
NEXT_RUN_FIELDS = {"tenant": text(100), "env": text(100), "flow_id": text(100), "status": choice(*TERMINAL, nullable=False),
                   "duration_seconds": number(0.001, MAX_RUN_SECONDS), "records_processed": integer(0, 10**9)}
ADVANCE_BODY = json_body(ADVANCE_FIELDS, "time/advance", required=("seconds",))
DEGRADE_BODY = json_body(DEGRADE_FIELDS, "degrade")
NEXT_RUN_BODY = json_body(NEXT_RUN_FIELDS, "ops/next-run", required=("status",))


def build_control(store: Store, clock: EmulatorClock, state_for: Callable[[str, str], OpsState],
                  tick_all: Callable[[], None]) -> APIRouter:
    router = APIRouter(prefix="/_emulator", tags=["control plane"], include_in_schema=False)

    async def state_of(tenant: str, env: str) -> tuple[OpsState, int]:
        await run_in_threadpool(dataset_of, store, tenant, env)  # 404 naming the known tenants; generated off the loop
        state, now = state_for(tenant, env), clock.now_ms()
        state.tick(now)
        return state, now

    @router.get("/time")
    async def get_time() -> Response:
        return json_response(clock.describe())

    @router.post("/time/advance")
    async def advance_time(body: dict[str, Any] = ADVANCE_BODY) -> Response:
        return await run_in_threadpool(advance, body["seconds"])  # off the event loop: the hooks may send webhooks

    def advance(seconds: float) -> Response:
        clock.advance(seconds)
        tick_all()
        for hook in hooks(store, "on_time_advanced"):
            hook()
        return json_response({**clock.describe(), "advanced_seconds": seconds})

    @router.get("/ops/{kind}")
    async def ground_truth(kind: str, tenant: str = Query("acme"), env: str = Query("live")) -> Response:
        state, now = await state_of(tenant, env)
        with state.lock:
            if kind == "flows":
                data = [state.flow_detail(f, now) for f in state.sorted_flows()]
            elif kind == "connectors":
                data = [c.view() for c in state.sorted_connectors()]
            elif kind == "runs":
                data = [r.view(now, detail=True) for r in state.sorted_runs(now_ms=now)]
            else:
                raise ApiError(404, "not_found", f"No ops ground truth '{kind}'; use flows, runs or connectors.")
        return json_response({"kind": kind, "tenant": tenant, "env": env, "count": len(data),
                              "now": iso_s(now), "data": data})

    @router.post("/ops/connectors/{connector_id}/degrade")
    async def degrade(connector_id: str, tenant: str = Query("acme"), env: str = Query("live"),
                      body: dict[str, Any] = DEGRADE_BODY) -> Response:
        state, now = await state_of(tenant, env)
        with state.lock:
            return json_response(state.degrade(connector_id, now, body.get("code"), body.get("message")))

    @router.post("/ops/connectors/{connector_id}/restore")
    async def restore(connector_id: str, tenant: str = Query("acme"), env: str = Query("live")) -> Response:
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

    return router

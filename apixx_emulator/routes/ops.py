"""The ops API under /v1 (flows, runs, connectors, api-keys): thin routes over models.ops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..exceptions import NotFound, ValidationError
from ..models import Store
from ..models.ops import RUN_STATUSES, OpsState, Run
from ..timestamps import iso_s, parse_us
from .common import ACTION_ERRORS, ERRORS, dataset_for, json_response, require_scope
from .shapes import (
    Connector,
    ConnectorList,
    Flow,
    FlowDetail,
    FlowList,
    RotatedKey,
    RunCreated,
    RunDetail,
    RunList,
    VerifyResult,
)

DEFAULT_LIMIT = 25  # the ops lists' default page size
MAX_LIMIT = 100  # the ops lists' largest page size
READ, WRITE = "flows:read", "flows:write"


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
            raise ValidationError(f"Parameter 'starting_after': no {kind} with id '{after[:100]}'.")
        start = next((i for i, item in enumerate(items) if sort_key(item) > sort_key(anchor)), len(items))
    page = items[start:start + limit]
    return {"data": [render(item) for item in page],
            "meta": {"total": len(items), "has_more": start + limit < len(items)}}


def time_param(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return -(-parse_us(value) // 1000)  # started_at (whole ms) >= from, < to: compare instants
    except (ValueError, OverflowError):
        raise ValidationError(f"Parameter '{name}' is not an RFC 3339 timestamp: {value[:100]!r}.") from None


def status_param(value: str | None) -> str | None:
    if value is not None and value not in RUN_STATUSES:
        raise ValidationError(f"Parameter 'status' must be one of {', '.join(RUN_STATUSES)}; got {value[:100]!r}.")
    return value


# -- the routes -------------------------------------------------------------------------------
def build(store: Store) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["ops"])
    clock = store.clock

    async def context(request: Request, scope: str) -> tuple[OpsState, int]:
        key = require_scope(request, scope)
        await dataset_for(store, key.tenant, key.env)  # generated off the event loop on a tenant's first request
        state, now = store.ops.state_for(key.tenant, key.env), clock.now_ms()
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
            raise NotFound(f"No API key with id '{key_id[:100]}'.")
        secret = store.keys.rotate(key_id, caller.tenant)
        return json_response({"id": key_id, "secret": secret, "rotated_at": iso_s(clock.now_ms())})

    return router

"""The canonical data API: thin routes over the datasets in models.py."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from . import bad_data
from .entities import ENTITIES, field_names
from .errors import ApiError
from .models import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ApiKey, Dataset, Store
from .timestamps import parse_us


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Page(BaseModel):
    entity: str
    count: int
    next_cursor: str | None
    data: list[dict[str, Any]]


ERRORS = {s: {"model": ErrorEnvelope} for s in (401, 403, 404, 422, 429)}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def require_scope(request: Request, scope: str) -> ApiKey:
    key: ApiKey = request.scope["state"]["api_key"]
    if scope not in key.scopes:
        raise ApiError(403, "forbidden", f"This API key lacks the '{scope}' scope.")
    return key


async def dataset_for(store: Store, key: ApiKey) -> Dataset:
    """The caller's dataset; the first request of a tenant generates it in a worker thread, so the
    event loop (other requests, a SIGTERM) never waits for it."""
    return store.ready(key.tenant, key.env) or await run_in_threadpool(store.dataset, key.tenant, key.env)


def check_entity(entity: str) -> None:
    if entity not in ENTITIES:
        raise ApiError(404, "not_found", f"Unknown entity '{entity}'. Known: {', '.join(sorted(ENTITIES))}.")


def timestamp_param(name: str, value: str | None) -> int | None:
    """The instant (microseconds) of an RFC 3339 parameter: Z or an offset, any fraction."""
    if value is None:
        return None
    try:
        return parse_us(value)
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_error", f"Parameter '{name}' is not an RFC 3339 timestamp: {value!r}.") from None


def field_list(entity: str, fields: str | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    known = set(field_names(entity))
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise ApiError(422, "validation_error", f"Parameter 'fields' names unknown field(s) of {entity}: {', '.join(unknown)}.")
    return ("canonical_id", "updated_at", *(f for f in wanted if f not in ("canonical_id", "updated_at")))


def project(records: list[dict], fields: tuple[str, ...] | None) -> list[dict]:
    if fields is None:
        return records
    return [{f: r.get(f) for f in fields if f in r} for r in records]


def build(store: Store) -> APIRouter:
    router = APIRouter(prefix="/api/public/data", tags=["canonical data"])

    @router.get("/{entity}", response_model=None, responses={200: {"model": Page}, **ERRORS},
                summary="List canonical records, ascending by updated_at")
    async def list_records(
        request: Request,
        entity: str,
        limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        cursor: str | None = Query(None, description="next_cursor of the previous page"),
        updated_since: str | None = Query(None, description="RFC 3339; inclusive (>=) unless --since-mode exclusive"),
        fields: str | None = Query(None, description="comma-separated field names"),
    ) -> Response:
        key = require_scope(request, "data:read")
        check_entity(entity)
        since = timestamp_param("updated_since", updated_since)
        after = timestamp_param("cursor", cursor)
        wanted = field_list(entity, fields)
        dataset = await dataset_for(store, key)
        modes, precision = store.settings, dataset.precision
        since_bound = None if since is None else precision.lower_bound(since, modes.since_mode == "inclusive")
        after_bound = None if after is None else precision.lower_bound(after, modes.cursor_mode == "inclusive")
        with dataset.lock:
            page, next_cursor = dataset.tables[entity].page(since_bound, after_bound, limit)
            payload = {"entity": entity, "count": len(page), "next_cursor": next_cursor,
                       "data": project(page, wanted)}
            body = bad_data.of(store).serve(entity, payload)  # as JSON, unless bad data is planned
        return Response(body, media_type="application/json")

    @router.get("/{entity}/{canonical_id}", response_model=None, responses={200: {"model": dict[str, Any]}, **ERRORS},
                summary="Retrieve one canonical record")
    async def get_record(request: Request, entity: str, canonical_id: str) -> Response:
        key = require_scope(request, "data:read")
        check_entity(entity)
        dataset = await dataset_for(store, key)
        with dataset.lock:
            record = dataset.tables[entity].by_id.get(canonical_id)
            if record is None:
                raise ApiError(404, "not_found", f"No {entity} with canonical_id '{canonical_id}'.")
            return json_response(record)

    return router

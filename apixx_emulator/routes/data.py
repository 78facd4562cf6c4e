"""The canonical data API under /api/public/data: thin routes over models.datasets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..entities import field_names
from ..exceptions import NotFound, ValidationError
from ..models import Store
from ..models.datasets import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from ..timestamps import parse_us
from .common import ERRORS, check_entity, dataset_for, json_response, require_scope
from .shapes import Page


def timestamp_param(name: str, value: str | None) -> int | None:
    """The instant (microseconds) of an RFC 3339 parameter: Z or an offset, any fraction."""
    if value is None:
        return None
    try:
        return parse_us(value)
    except (ValueError, OverflowError):
        raise ValidationError(f"Parameter '{name}' is not an RFC 3339 timestamp: {value[:100]!r}.") from None


def field_list(entity: str, fields: str | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    known = set(field_names(entity))
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise ValidationError(f"Parameter 'fields' names unknown field(s) of {entity}: {', '.join(unknown)[:300]}.")
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
        dataset = await dataset_for(store, key.tenant, key.env)
        modes = store.settings
        with dataset.lock:
            page, next_cursor = dataset.page(entity, since, after, limit, since_inclusive=modes.since_mode == "inclusive",
                                             cursor_inclusive=modes.cursor_mode == "inclusive")
            payload = {"entity": entity, "count": len(page), "next_cursor": next_cursor,
                       "data": project(page, wanted)}
            body = store.bad_data.serve(entity, payload)  # as JSON, unless bad data is planned
        return Response(body, media_type="application/json")

    @router.get("/{entity}/{canonical_id}", response_model=None, responses={200: {"model": dict[str, Any]}, **ERRORS},
                summary="Retrieve one canonical record")
    async def get_record(request: Request, entity: str, canonical_id: str) -> Response:
        key = require_scope(request, "data:read")
        check_entity(entity)
        dataset = await dataset_for(store, key.tenant, key.env)
        with dataset.lock:
            record = dataset.tables[entity].by_id.get(canonical_id)
            if record is None:
                raise NotFound(f"No {entity} with canonical_id '{canonical_id[:100]}'.")
            return json_response(record)

    return router

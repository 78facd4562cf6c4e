"""What every route shares: JSON answers, the one table of documented error responses, scopes,
and a caller's dataset (generated off the event loop)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..entities import ENTITY_NAMES
from ..exceptions import Forbidden, NotFound
from ..models import Store
from ..models.datasets import Dataset
from ..models.keys import ApiKey
from .shapes import ErrorEnvelope

# The error responses an API route documents in /openapi.json (status -> body model); actions add 409.
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorEnvelope} for s in (401, 403, 404, 422, 429)}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 409: {"model": ErrorEnvelope}}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def require_scope(request: Request, scope: str) -> ApiKey:
    """The caller's key (the gate authenticated it), or 403 naming the scope it lacks."""
    key: ApiKey = request.scope["state"]["api_key"]
    if scope not in key.scopes:
        raise Forbidden(f"This API key lacks the '{scope}' scope.")
    return key


async def dataset_for(store: Store, tenant: str, env: str) -> Dataset:
    """A tenant's dataset; the first request of a tenant generates it in a worker thread, so the
    event loop (other requests, a SIGTERM) never waits for it."""
    return store.ready(tenant, env) or await run_in_threadpool(store.dataset, tenant, env)


def check_entity(entity: str) -> None:
    if entity not in ENTITY_NAMES:
        raise NotFound(f"Unknown entity '{entity[:100]}'. Known: {', '.join(ENTITY_NAMES)}.")

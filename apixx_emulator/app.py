"""Builds the ASGI application: the routers, error envelopes for every failure, and the gate."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .exceptions import CODES, ApiError, InternalError, ValidationError
from .gate import Gate
from .models import Settings, Store
from .routes import routers
from .routes.common import json_response


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "req_unknown")


def error_response(request: Request, err: ApiError):
    response = json_response(err.body(request_id(request)), err.status)
    response.headers.update(err.headers)
    return response


async def on_api_error(request: Request, err: ApiError):
    return error_response(request, err)


async def on_validation_error(request: Request, err: RequestValidationError):
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body")]
        problems.append(f"parameter '{'.'.join(loc) or 'body'}': {e.get('msg', 'invalid')}")
    return error_response(request, ValidationError("; ".join(problems) or "Invalid request."))


async def on_http_error(request: Request, err: StarletteHTTPException):
    if err.status_code == 404:
        message = f"No route {request.url.path[:200]}."
    elif err.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path[:200]}."
    else:
        message = str(err.detail)
    return error_response(request, ApiError(err.status_code, CODES.get(err.status_code), message))


async def on_unexpected(request: Request, err: Exception):
    """A bug in a route: Starlette's last-resort handler answers with this (in the envelope, the
    cause left to the server's log) and re-raises to the gate, which logs it."""
    return error_response(request, InternalError(f"Internal error in the emulator (request {request_id(request)}); see its log."))


def create_app(settings: Settings | None = None) -> Any:
    """The emulator as an ASGI app; `app.state.store` is its state, its threads already running."""
    store = Store(settings or Settings())
    api = FastAPI(title="APIXX (local emulator)", version=__version__,
                  description="A local model of the APIXX data and ops APIs, for tests and demos.",
                  docs_url=None, redoc_url=None)
    api.state.store = store
    api.add_exception_handler(ApiError, on_api_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)
    for router in routers(store):
        api.include_router(router)
    store.start()
    gated = Gate(api, store)
    gated.state = api.state  # type: ignore[attr-defined]
    return gated

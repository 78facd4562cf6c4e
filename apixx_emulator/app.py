"""Builds the ASGI application: the API routers, the control plane, error envelopes and the gate."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, control, data_api
from .errors import CODES, ApiError
from .gate import Gate
from .models import Settings, Store


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "req_unknown")


def error_response(request: Request, err: ApiError):
    response = data_api.json_response(err.body(request_id(request)), err.status)
    response.headers.update(err.headers)
    return response


async def on_api_error(request: Request, err: ApiError):
    return error_response(request, err)


async def on_validation_error(request: Request, err: RequestValidationError):
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body")]
        problems.append(f"parameter '{'.'.join(loc) or 'body'}': {e.get('msg', 'invalid')}")
    return error_response(request, ApiError(422, "validation_error", "; ".join(problems) or "Invalid request."))


async def on_http_error(request: Request, err: StarletteHTTPException):
    if err.status_code == 404:
        message = f"No route {request.url.path}."
    elif err.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(err.detail)
    return error_response(request, ApiError(err.status_code, CODES.get(err.status_code), message))


async def on_unexpected(request: Request, err: Exception):
    """A bug in a route: Starlette's last-resort handler answers with this (in the envelope, the
    cause left to the server's log) and re-raises to the gate, which logs it."""
    return error_response(request, ApiError(500, "internal_error",
                                            f"Internal error in the emulator (request {request_id(request)}); see its log."))


def create_app(settings: Settings | None = None) -> Any:
    """The emulator as an ASGI app; `app.state.store` is its state."""
    store = Store(settings or Settings())
    api = FastAPI(title="APIXX (local emulator)", version=__version__,
                  description="A local model of the APIXX data and ops APIs, for tests and demos.",
                  docs_url=None, redoc_url=None)
    api.state.store = store
    api.add_exception_handler(ApiError, on_api_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)
    api.include_router(data_api.build(store))
    api.include_router(control.build(store))
    for extension in load_extensions():
        extension.install(api, store)
    gated = Gate(api, store)
    gated.state = api.state  # type: ignore[attr-defined]
    return gated


def load_extensions() -> list[Any]:
    """The ops API and webhook deliveries live in their own modules, each with `install(app, store)`."""
    import importlib

    modules = []
    for name in ("ops", "webhooks_out"):
        try:
            modules.append(importlib.import_module(f"apixx_emulator.{name}"))
        except ModuleNotFoundError as err:
            if err.name != f"apixx_emulator.{name}":
                raise
    return modules

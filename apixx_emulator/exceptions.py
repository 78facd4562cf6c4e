"""Typed API errors carrying the real status and code; rendered as the documented envelope."""

from __future__ import annotations

import secrets

CODES = {  # status -> the documented error code (the one table of them)
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "invalid_request",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "internal_error",
    503: "internal_error",
}


class ApiError(Exception):
    """An error the API answers with `{"error": {"code", "message", "request_id"}}`."""

    status = 500

    def __init__(self, status: int | None, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status or type(self).status
        self.code = code or CODES.get(self.status, "internal_error")
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str) -> dict:
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


class _Typed(ApiError):
    """An ApiError whose status (and so its code) is fixed by its class: `NotFound("No flow …")`."""

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(type(self).status, None, message, headers)


class InvalidRequest(_Typed):
    status = 400


class Unauthorized(_Typed):
    status = 401


class Forbidden(_Typed):
    status = 403


class NotFound(_Typed):
    status = 404


class Conflict(_Typed):
    status = 409


class TooLarge(_Typed):
    status = 413


class UnsupportedMediaType(_Typed):
    status = 415


class ValidationError(_Typed):
    status = 422


class RateLimited(_Typed):
    status = 429


class InternalError(_Typed):
    status = 500


class Unavailable(_Typed):
    status = 503


def new_request_id() -> str:
    return "req_" + secrets.token_hex(6)

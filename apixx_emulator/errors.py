"""Typed API errors carrying the real status and code; rendered as the documented envelope."""

from __future__ import annotations

import secrets

CODES = {  # status -> the documented error code
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

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "internal_error")
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str) -> dict:
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


def new_request_id() -> str:
    return "req_" + secrets.token_hex(6)

"""The error policy: what each HTTP status means for a request, and how a failure is told."""

from __future__ import annotations

import time
from enum import Enum

import orjson
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_apixx.errors import ApiRequestError
from tap_apixx.pacing import parse_reset, parse_retry_after
from tap_apixx.settings import redact


class Action(str, Enum):
    """What to do with a response, by HTTP status."""

    OK = "ok"
    RETRY = "retry"  # transient: back off exponentially with jitter, then give up clearly
    THROTTLE = "throttle"  # wait Retry-After, however long (up to max_rate_limit_wait)
    FATAL = "fatal"  # fail at once with status, code, message and request_id


ERROR_POLICY: dict[int, Action] = {
    400: Action.FATAL,
    401: Action.FATAL,
    403: Action.FATAL,
    404: Action.FATAL,
    409: Action.FATAL,
    422: Action.FATAL,
    429: Action.THROTTLE,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}

HINTS: dict[int, str] = {
    401: "Check api_key: it is unknown, revoked or was rotated.",
    403: "The API key lacks the '{scope}' scope this stream needs; use a key that has it.",
    404: "Check data_url/api_url and the entity name; objects of another tenant are 404 too.",
    422: "The API rejected the request parameters; report this with the request_id.",
}
REDIRECT_HINT = "Redirects are not followed; set the final URL in the config."

MAX_THROTTLED_RETRIES = 20  # consecutive 429s on one request before giving up
DEFAULT_RETRY_AFTER_SECONDS = 60.0  # a 429 that says nothing about when to come back


def action_for(status: int) -> Action:
    """Look up the error policy: unlisted 5xx retry, unlisted 3xx/4xx are fatal."""
    if status < 300:
        return Action.OK
    return ERROR_POLICY.get(status, Action.RETRY if status >= 500 else Action.FATAL)


class ThrottledError(RetriableAPIError):
    """A 429: wait `retry_after` seconds, then try again."""

    def __init__(self, message: str, response: requests.Response, retry_after: float) -> None:
        super().__init__(message, response)
        self.retry_after = retry_after


def request_id(response: requests.Response) -> str | None:
    """The request id the API sends with every response."""
    return response.headers.get("X-Request-Id")


def rid(response: requests.Response) -> str:
    """`(request_id=...)`, for the end of an error line."""
    return f"(request_id={request_id(response)})"


def error_fields(response: requests.Response) -> tuple[str, str, str | None]:
    """(code, message, request_id) from the error envelope, or a summary of a non-JSON body."""
    try:
        error = orjson.loads(response.content).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    if not isinstance(error, dict) or not error:
        kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
        summary = f"non-JSON error body ({kind}, {len(response.content)} bytes)"
        return "-", summary, request_id(response)
    message = " ".join(str(error.get("message", "")).split())  # keep it on one line
    return str(error.get("code", "-")), message, error.get("request_id") or request_id(response)


def describe(stream: str, response: requests.Response) -> str:
    """`<stream>: HTTP <status> <code>: <message> (request_id=...)`: one line."""
    code, message, req_id = error_fields(response)
    return f"{stream}: HTTP {response.status_code} {code}: {message} (request_id={req_id})"


def fatal_error(
    stream: str, response: requests.Response, scope: str, api_key: str | None
) -> ApiRequestError:
    """The error for a fatal status: the API's words, the request id and a hint."""
    code, _, req_id = error_fields(response)
    hint = HINTS.get(response.status_code, "").format(scope=scope)
    text = describe(stream, response) + (f". {hint}" if hint else "")
    if 300 <= response.status_code < 400:
        text += f" {REDIRECT_HINT}"
    text = redact(text, api_key)
    return ApiRequestError(text, status=response.status_code, code=code, request_id=req_id)


def retry_after(response: requests.Response) -> float:
    """Seconds to wait: Retry-After (seconds or an HTTP date), else X-RateLimit-Reset, else a minute.

    A value that makes no sense (negative, NaN, junk) is skipped for the next source.
    """
    now = time.time()
    wait = parse_retry_after(response.headers.get("Retry-After"), now)
    if wait is not None:
        return wait
    reset = parse_reset(response.headers.get("X-RateLimit-Reset"), now)
    if reset is not None:
        return max(1.0, reset - now)
    return DEFAULT_RETRY_AFTER_SECONDS

"""Sending requests: through the key's one pacer, under the error policy, with retries."""

from __future__ import annotations

import random
import time
import typing as t
from functools import cached_property
from urllib.parse import urlsplit

import orjson
import requests
from requests.utils import resolve_proxies
from singer_sdk import RESTStream
from singer_sdk.exceptions import RetriableAPIError

from tap_apixx.connectivity import FIRST_CONTACT_WAIT_SECONDS, FirstContact, diagnose
from tap_apixx.error_policy import (
    MAX_THROTTLED_RETRIES,
    Action,
    ThrottledError,
    action_for,
    describe,
    fatal_error,
    retry_after,
    rid,
)
from tap_apixx.errors import ApiRequestError
from tap_apixx.http_guard import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE,
    Limits,
    OriginRefused,
    ResponseTooLarge,
    check_origin,
    exchange,
    mount,
)
from tap_apixx.settings import DEFAULT_MAX_RATE_LIMIT_WAIT, allowed_origins, redact

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_apixx.pacing import RatePacer

TRANSIENT_ERRORS = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
MAX_TRIES = 6  # attempts at a request failing transiently (429s are counted apart)
PAYLOAD_ATTR = "apixx_payload"  # the parsed body, kept on the response by validate_response

Send = t.Callable[[requests.PreparedRequest, t.Any], requests.Response]


class PacedSession(requests.Session):
    """A session that takes a slot from the stream's pacer for each request and reports back.

    The SDK sends every request through `RESTStream.requests_session`, so pacing here covers
    lists, detail requests and retries alike, without replacing the SDK's request method.
    """

    def __init__(self, owner: TransportStream) -> None:
        super().__init__()
        self.owner = owner  # not `stream`: requests.Session.stream is its body-streaming flag
        self._proxies: dict[tuple[str, str], dict[str, str]] = {}
        mount(self)  # connections the request deadline can cut

    def proxies_for(self, request: requests.PreparedRequest) -> dict[str, str]:
        """The proxies for the request's scheme and host, from HTTPS_PROXY/NO_PROXY & co.

        Resolved once per host and session, as requests would on every request.
        """
        scheme, netloc = urlsplit(request.url or "")[:2]
        found = self._proxies.get((scheme, netloc))
        if found is None:
            found = resolve_proxies(request, dict(self.proxies), self.trust_env)
            self._proxies[(scheme, netloc)] = found
        return found

    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        """One paced exchange, to a configured origin only, within the deadline and size cap."""
        stream, pacer = self.owner, self.owner.pacer
        try:
            check_origin(request.url or "", stream.limits.origins)
        except OriginRefused as exc:
            raise ApiRequestError(f"{stream.name}: {exc}") from None
        if "proxies" not in kwargs:  # requests would look in the environment on every call
            kwargs["proxies"] = self.proxies_for(request)
        pacer.acquire()
        stream.counts["requests"] += 1
        try:
            response = exchange(super().send, request, stream.limits, **kwargs)
        except ResponseTooLarge as exc:
            pacer.observe(exc.response.headers if exc.response is not None else {})
            where = f" {rid(exc.response)}" if exc.response is not None else ""
            raise ApiRequestError(f"{stream.name}: {exc}{where}", status=200) from None
        except BaseException:
            pacer.observe({})  # no longer in flight (other threads may wait on its answer)
            raise
        pacer.observe(response.headers)
        self.owner.first_contact.answered(self.owner.url_base)
        return response


class TransportStream(RESTStream[t.Any]):
    """A REST stream whose requests are paced, checked against ERROR_POLICY and retried."""

    required_scope = "data:read"
    url_setting: str  # the setting holding url_base (ApixxStream), named in connection hints
    allow_redirects = False  # a redirect could carry the bearer key to another host
    backoff_base_seconds = 1.0  # first retry waits about this long, then doubles
    backoff_max_seconds = 60.0

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts = {"records": 0, "requests": 0, "retries": 0, "throttled": 0}
        self._paced_session = PacedSession(self)

    @property
    def pacer(self) -> RatePacer:
        """The tap's one pacer: every stream draws on the key's one budget."""
        return self._tap.pacer  # type: ignore[attr-defined]

    @property
    def requests_session(self) -> requests.Session:
        return self._paced_session

    @property
    def first_contact(self) -> FirstContact:
        """The hosts that answered in this run, shared by the tap's streams."""
        return self._tap.__dict__.setdefault("_apixx_first_contact", FirstContact())

    @cached_property
    def limits(self) -> Limits:
        """The deadline, size cap and origins every exchange of this stream is held to."""
        config = self.config
        return Limits(
            float(config.get("request_deadline", DEFAULT_REQUEST_DEADLINE)),
            int(config.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)),
            allowed_origins(config),
        )

    @cached_property
    def max_rate_limit_wait(self) -> float:
        return float(self.config.get("max_rate_limit_wait", DEFAULT_MAX_RATE_LIMIT_WAIT))

    def redact(self, text: str) -> str:
        """Remove the API key from any text that may be shown or logged."""
        return redact(text, self.config.get("api_key"))

    def send(
        self, prepared: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        """Send one request with the retries of `request_decorator`."""
        return self.request_decorator(self._request)(prepared, context)

    def validate_response(self, response: requests.Response) -> None:
        """Raise per ERROR_POLICY; on success parse the body once (a bad body is transient)."""
        action = action_for(response.status_code)
        if action is Action.OK:
            try:
                setattr(response, PAYLOAD_ATTR, orjson.loads(response.content))
            except orjson.JSONDecodeError:
                msg = f"{self.name}: unparseable JSON body (truncated?) {rid(response)}"
                raise RetriableAPIError(msg, response) from None
            return
        if action is Action.THROTTLE:
            wait = retry_after(response)
            msg = f"{self.name}: HTTP 429 rate_limited, Retry-After {wait:.0f} s {rid(response)}"
            raise ThrottledError(msg, response, wait)
        if action is Action.RETRY:
            raise RetriableAPIError(self.redact(describe(self.name, response)), response)
        raise fatal_error(self.name, response, self.required_scope, self.config.get("api_key"))

    def request_decorator(self, func: Send) -> Send:
        """Retry transient failures with jittered backoff and wait out 429s.

        Not the SDK's `backoff` decorator: it counts 429s against the same tries as transient
        failures and, on giving up, raises the raw error; ours waits out Retry-After apart and
        ends with one clear line.
        """

        def send(prepared: requests.PreparedRequest, context: Context | None) -> requests.Response:
            failures = throttles = 0
            while True:
                try:
                    return func(prepared, context)
                except ThrottledError as exc:
                    throttles += 1
                    self._wait_throttled(exc, throttles)
                except TRANSIENT_ERRORS as exc:
                    failures += 1
                    self._wait_transient(exc, failures)

        return send

    def _wait_throttled(self, exc: ThrottledError, throttles: int) -> None:
        self.counts["throttled"] += 1
        ceiling = self.max_rate_limit_wait
        if exc.retry_after > ceiling or throttles > MAX_THROTTLED_RETRIES:
            why = (
                f"Retry-After is beyond max_rate_limit_wait ({ceiling:.0f} s)"
                if exc.retry_after > ceiling
                else f"{throttles} rate-limited attempts"
            )
            msg = (
                f"{exc} — giving up: {why}; lower max_requests_per_minute, stop other jobs "
                "sharing this api_key, or raise max_rate_limit_wait."
            )
            raise ApiRequestError(self.redact(msg), status=429, code="rate_limited") from None
        self.logger.warning("%s; waiting before retrying", exc)
        time.sleep(exc.retry_after)

    def _wait_transient(self, exc: Exception, failures: int) -> None:
        problem = diagnose(exc, self.url_base, self.url_setting)
        detail = self.redact(problem.message if problem else str(exc) or type(exc).__name__)
        attempts = self.first_contact.attempts(problem) if problem else None
        if problem and attempts is not None:  # never reached the host: a setting, not a blip
            if failures >= attempts:
                raise ApiRequestError(f"{self.name}: {detail}") from None
            self.logger.warning(
                "%s: %s (retry %d in %.1f s)",
                self.name,
                problem.summary,
                failures,
                FIRST_CONTACT_WAIT_SECONDS,
            )
            time.sleep(FIRST_CONTACT_WAIT_SECONDS)
            return
        if failures >= self.backoff_max_tries():
            prefix = "" if detail.startswith(f"{self.name}:") else f"{self.name}: "
            msg = " ".join(f"{prefix}{detail}; gave up after {failures} attempts".split())
            raise ApiRequestError(msg) from None
        self.counts["retries"] += 1
        wait = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (failures - 1))
        wait *= random.uniform(0.5, 1.0)
        self.logger.warning("Transient error (%s); retry %d in %.2f s", detail, failures, wait)
        time.sleep(wait)

    def backoff_max_tries(self) -> int:
        return MAX_TRIES


def response_body(response: t.Any) -> dict[str, t.Any]:
    """The JSON body of a response, as parsed once by `validate_response` when it was."""
    payload = getattr(response, PAYLOAD_ATTR, None)
    return payload if isinstance(payload, dict) else orjson.loads(response.content)

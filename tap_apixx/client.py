"""The base APIXX stream: auth, the error policy, retries, rate pacing, tie-safe paging, state."""

from __future__ import annotations

import contextlib
import random
import time
import typing as t
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import cached_property

import orjson
import requests
from singer_sdk import RESTStream
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform

from tap_apixx import __version__
from tap_apixx.concurrency import SerialSingerWriter, encode
from tap_apixx.errors import ApiRequestError
from tap_apixx.pagination import Page, SeenAt, TieSafePaginator

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from singer_sdk.helpers.types import Context

    from tap_apixx.pacing import RatePacer


class Action(str, Enum):
    """What to do with a response, by HTTP status."""

    OK = "ok"
    RETRY = "retry"  # transient: back off exponentially with jitter, then give up clearly
    THROTTLE = "throttle"  # wait Retry-After, however long (up to MAX_RETRY_AFTER_SECONDS)
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

MAX_RETRY_AFTER_SECONDS = 900  # 15 min: wait out any Retry-After up to this, then give up
MAX_THROTTLED_RETRIES = 20  # consecutive 429s on one request before giving up
PROGRESS_EVERY_SECONDS = 5.0
SEEN_KEY = "seen_at_bookmark"  # state: ids already emitted at the bookmark's exact instant
TRANSIENT_ERRORS = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


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


def iso_ms(value: datetime) -> str:
    """Format like the API's updated_at: UTC, millisecond precision, `Z`."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class ApixxStream(RESTStream[t.Any]):
    """Shared plumbing of every APIXX stream: headers, error policy, retries and pacing."""

    required_scope = "data:read"
    allow_redirects = False  # a redirect could carry the bearer key to another host
    backoff_base_seconds = 1.0  # first retry waits about this long, then doubles
    backoff_max_seconds = 60.0

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts = {"records": 0, "requests": 0, "retries": 0, "throttled": 0}

    @property
    def pacer(self) -> RatePacer:
        return self._tap.pacer  # type: ignore[attr-defined]

    @cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["api_key"])

    @cached_property
    def user_agent(self) -> str:
        return self.config.get("user_agent") or f"tap-apixx/{__version__}"

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    @property
    def timeout(self) -> int:
        return int(self.config.get("request_timeout", 60))

    def redact(self, text: str) -> str:
        """Remove the API key from any text that may be shown or logged."""
        key = self.config.get("api_key")
        return text.replace(key, "[redacted]") if key else text

    # Responses and the error policy

    def _request(
        self,
        prepared_request: requests.PreparedRequest,
        context: Context | None,
    ) -> requests.Response:
        """Send one request through the pacer, then apply the error policy."""
        self.pacer.acquire()
        self.counts["requests"] += 1
        try:
            response = self.requests_session.send(
                prepared_request, timeout=self.timeout, allow_redirects=self.allow_redirects
            )
        except BaseException:
            self.pacer.observe({})  # no longer in flight (other threads may wait on its answer)
            raise
        self.pacer.observe(response.headers)
        self._write_request_duration_log(self.path, response, context, None)
        self.validate_response(response)
        return response

    def validate_response(self, response: requests.Response) -> None:
        """Raise per ERROR_POLICY; on success parse the body once (a bad body is transient)."""
        action = action_for(response.status_code)
        if action is Action.OK:
            try:
                response.apixx_payload = orjson.loads(response.content)  # type: ignore[attr-defined]
            except orjson.JSONDecodeError:
                msg = f"{self.name}: unparseable JSON body (truncated?) {_rid(response)}"
                raise RetriableAPIError(msg, response) from None
            return
        if action is Action.THROTTLE:
            wait = _retry_after(response)
            msg = f"{self.name}: HTTP 429 rate_limited, Retry-After {wait:.0f} s {_rid(response)}"
            raise ThrottledError(msg, response, wait)
        if action is Action.RETRY:
            raise RetriableAPIError(self._describe(response), response)
        raise self._fatal_error(response)

    def _fatal_error(self, response: requests.Response) -> ApiRequestError:
        code, message, request_id = _error_fields(response)
        hint = HINTS.get(response.status_code, "").format(scope=self.required_scope)
        text = f"{self.name}: HTTP {response.status_code} {code}: {message} "
        text += f"(request_id={request_id})" + (f". {hint}" if hint else "")
        if 300 <= response.status_code < 400:
            text += " Redirects are not followed; set the final URL in the config."
        return ApiRequestError(
            self.redact(text), status=response.status_code, code=code, request_id=request_id
        )

    def _describe(self, response: requests.Response) -> str:
        code, message, request_id = _error_fields(response)
        return self.redact(
            f"{self.name}: HTTP {response.status_code} {code}: {message} (request_id={request_id})"
        )

    # Retries

    def request_decorator(self, func: Callable[..., requests.Response]) -> Callable:
        """Retry transient failures with jittered backoff and wait out 429s."""

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
        if exc.retry_after > MAX_RETRY_AFTER_SECONDS or throttles > MAX_THROTTLED_RETRIES:
            msg = (
                f"{exc} — giving up after {throttles} rate-limited attempt(s) "
                f"(ceiling {MAX_RETRY_AFTER_SECONDS} s); lower max_requests_per_minute or "
                "stop other jobs sharing this api_key."
            )
            raise ApiRequestError(self.redact(msg), status=429, code="rate_limited") from None
        self.logger.warning("%s; waiting before retrying", exc)
        time.sleep(exc.retry_after)

    def _wait_transient(self, exc: Exception, failures: int) -> None:
        detail = self.redact(str(exc) or type(exc).__name__)
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
        return 6

    def parse_response(self, response: requests.Response) -> Iterable[dict]:
        yield from _payload(response).get("data") or []


class CanonicalStream(ApixxStream):
    """One canonical entity of the data API, synced incrementally on updated_at."""

    primary_keys = ("canonical_id",)
    replication_key = "updated_at"
    is_sorted = True  # the API returns ascending updated_at; the paginator verifies it
    check_sorted = False  # lookback re-reads records older than the bookmark on purpose
    # Records arrive as plain JSON (orjson); unknown fields are dropped and warned about once
    # by the stream itself, so the SDK's per-record recursive conformance would only cost time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    STATE_MSG_FREQUENCY = 10**9  # STATE is written after every page instead (_checkpoint)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[bytes] = []  # this page's RECORD lines, written with its STATE

    @property
    def url_base(self) -> str:
        return self.config.get("data_url", "").rstrip("/")

    @property
    def path(self) -> str:  # type: ignore[override]
        return f"/{self.name}"

    @cached_property
    def known_fields(self) -> frozenset[str]:
        return frozenset(self.schema["properties"])

    @cached_property
    def fields_param(self) -> str | None:
        """`?fields=` for the selected properties; None when all are selected."""
        props = list(self.schema["properties"])
        selected = [p for p in props if self.mask.get(("properties", p), True)]
        if len(selected) == len(props):
            return None  # ask for everything, so new fields reach us and get reported
        return ",".join(dict.fromkeys(["canonical_id", "updated_at", *selected]))

    @cached_property
    def selected_fields(self) -> frozenset[str]:
        """The properties the catalog selects (all but the deselected ones)."""
        return frozenset(p for p in self.schema["properties"] if self.mask.get(("properties", p), True))

    @cached_property
    def exact_types(self) -> dict[str, frozenset[type]]:
        """`field_types` as sets of exact types (what orjson produces), for a cheap check."""
        return {
            name: frozenset(types) | ({bool} if int in types else set())  # as isinstance does
            for name, types in self.field_types.items()
            if types
        }

    @cached_property
    def field_types(self) -> dict[str, tuple[type, ...]]:
        """Python types each schema property may hold, for the wrong-type warning."""
        return {
            name: tuple(t for js in _types_of(prop) for t in JSON_TYPES.get(js, ()))
            for name, prop in self.schema["properties"].items()
        }

    def validate_response(self, response: requests.Response) -> None:
        """A 200 must carry a `data` list; one without it is treated like a truncated body."""
        super().validate_response(response)
        payload = getattr(response, "apixx_payload", None)
        if not (isinstance(payload, dict) and isinstance(payload.get("data"), list)):
            got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            msg = f"{self.name}: HTTP {response.status_code} body without a 'data' list "
            raise RetriableAPIError(msg + f"(got {got}) {_rid(response)}", response)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        token = next_page_token
        return {"limit": token.limit, "updated_since": token.since, "fields": self.fields_param}

    # Start point and state

    def get_new_paginator(self) -> TieSafePaginator:
        since, resume = self._start_point()
        page_size = int(self.config.get("page_size", 1000))
        return TieSafePaginator(self.name, page_size, since, resume, strict=True)

    def _start_point(self) -> tuple[str | None, SeenAt]:
        """The later of start_date and (bookmark - lookback), and the ids seen at the bookmark."""
        state = self.stream_state
        self._bookmark_in = state.get("replication_key_value")
        self._seen_in = state.get(SEEN_KEY)
        starts = []
        if start_date := self.config.get("start_date"):
            starts.append(parse_ts(start_date))
        if self._bookmark_in:
            lookback = timedelta(minutes=float(self.config.get("lookback_minutes", 5)))
            starts.append(parse_ts(self._bookmark_in) - lookback)
        since = iso_ms(max(starts)) if starts else None
        self.logger.info("Syncing '%s' from %s", self.name, since or "the beginning")
        return since, SeenAt.from_state(self._seen_in)

    def _checkpoint(self, paginator: TieSafePaginator) -> None:
        """Write the page's records, then move the bookmark and write STATE, as one step.

        Under the output lock, so that a STATE line of another stream (which carries every
        bookmark) never shows this bookmark ahead of the records written, nor half updated.
        """
        seen = paginator.boundary
        if seen.ts is None:
            return
        if self._bookmark_in and seen.ts < self._bookmark_in:
            value, seen_state = self._bookmark_in, self._seen_in  # still inside the lookback
        else:
            value, seen_state = seen.ts, seen.to_state()
        with self._output_lock:
            self._flush_records()
            self.stream_state.update(
                {"replication_key": self.replication_key, "replication_key_value": value,
                 SEEN_KEY: seen_state}
            )
            self.state_manager.is_flushed = False
            self._write_state_message()

    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        """Nothing per record: `_checkpoint` moves the bookmark once the page is written."""

    # The record path: one orjson call per record, one write per page

    @cached_property
    def _fast_writer(self) -> SerialSingerWriter | None:
        """The tap's writer when records can skip the SDK's per-record message objects.

        That is when no stream map or flattening changes them: the SDK would only copy each
        record, drop deselected fields (the API was not asked for them, and
        `_drop_unknown_fields` drops them if sent) and re-encode it with simplejson.
        """
        writer, maps = self._tap.message_writer, self.stream_maps
        plain = len(maps) == 1 and type(maps[0]) is SameRecordTransform
        if plain and not maps[0].flattening_enabled and maps[0].stream_alias == self.name:
            return writer if isinstance(writer, SerialSingerWriter) else None
        return None

    @property
    def _output_lock(self) -> t.ContextManager:
        writer = self._tap.message_writer
        return writer.lock if isinstance(writer, SerialSingerWriter) else contextlib.nullcontext()

    def _write_record_message(self, record: dict) -> None:
        if self._fast_writer is None:
            super()._write_record_message(record)
            return
        if not self._pending:  # a page's records share one prefix and time_extracted
            self._line_prefix, self._line_suffix = self._record_framing()
        self._pending.append(self._line_prefix + encode(record) + self._line_suffix)
        self.state_manager.is_flushed = False

    def _record_framing(self) -> tuple[bytes, bytes]:
        """The bytes around a record in its RECORD line, keys in the SDK's order."""
        prefix = b'{"type":"RECORD","stream":' + orjson.dumps(self.name) + b',"record":'
        suffix = b""
        if self._stream_version is not None:
            suffix += b',"version":' + orjson.dumps(self._stream_version)
        suffix += b',"time_extracted":' + orjson.dumps(datetime.now(timezone.utc)) + b"}\n"
        return prefix, suffix

    def _flush_records(self) -> None:
        if self._pending and self._fast_writer is not None:
            data = b"".join(self._pending)
            self._pending.clear()
            self._fast_writer.write_lines(data)

    def _write_state_message(self) -> None:
        with self._output_lock:
            self._flush_records()  # never a STATE ahead of this stream's records
            super()._write_state_message()

    # The sync loop

    def request_records(self, context: Context | None) -> Iterator[dict]:
        paginator = self.get_new_paginator()
        send = self.request_decorator(self._request)
        progress = SyncProgress(self, paginator.current_value.since)
        while not paginator.finished:
            prepared = self._prepare_request(context=context, page=paginator)
            response = send(prepared, context)
            payload = _payload(response)
            page = Page(payload.get("data") or [], payload.get("next_cursor"), _request_id(response))
            fresh = paginator.take(page)
            paginator.advance(page)  # type: ignore[arg-type]  # may refuse a giant tie group
            self._drop_unknown_fields(fresh)
            self.counts["records"] += len(fresh)
            yield from fresh
            self._checkpoint(paginator)
            progress.tick(paginator.last_ts, page.records[0].get("updated_at") if page.records else None)
        progress.summary()

    def _drop_unknown_fields(self, records: list[dict]) -> None:
        """A field the schema does not know never breaks a sync: warn once, then drop it.

        A value of a type the schema does not allow is passed on unchanged (nothing is lost;
        the loader decides), with one warning per stream and field.
        """
        known, selected, types = self.known_fields, self.selected_fields, self.exact_types
        for record in records:
            for name, value in record.items():
                allowed = types.get(name)
                if allowed is not None and type(value) not in allowed:
                    self._warn_wrong_type(name, value)
            if record.keys() <= selected:
                continue
            for name in record.keys() - selected:
                del record[name]
                if name not in known:  # a deselected field sent anyway goes silently
                    self._warn_new_field(name)

    def _warn_wrong_type(self, name: str, value: t.Any) -> None:
        self._warn_once("type", name, "Stream '%s': the API sent field '%s' as %s, not the type the "
                        "schema says; passing it on unchanged.", type(value).__name__)

    def _warn_new_field(self, name: str) -> None:
        self._warn_once("new", name, "Stream '%s': the API sent field '%s', unknown to the schema; "
                        "ignoring it (update the tap to sync it).")

    def _warn_once(self, kind: str, name: str, message: str, *args: t.Any) -> None:
        """Warn once per stream, kind and field name: not once per record."""
        warned = self.__dict__.setdefault("_warned", set())
        if (kind, name) not in warned:
            warned.add((kind, name))
            self.logger.warning(message, self.name, name, *args)


class SyncProgress:
    """Logs records, rate and % of the time window at most every few seconds, then a summary."""

    def __init__(self, stream: ApixxStream, since: str | None) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last_log = self.started
        self.window_start = parse_ts(since).timestamp() if since else None
        self.window_end = time.time()

    def tick(self, current_ts: str | None, first_ts: str | None = None) -> None:
        """`first_ts`: the earliest record of the page; without a start point the window opens there."""
        if self.window_start is None and first_ts:
            self.window_start = parse_ts(first_ts).timestamp()
        now = time.monotonic()
        if now - self.last_log < PROGRESS_EVERY_SECONDS:
            return
        self.last_log = now
        records = self.stream.counts["records"]
        rate = records / max(now - self.started, 1e-9)
        self.stream.logger.info(
            "Progress '%s': %d records, %.0f records/s, %s of the time window",
            self.stream.name,
            records,
            rate,
            self._percent(current_ts),
        )

    def _percent(self, current_ts: str | None) -> str:
        if current_ts is None:
            return "?"
        current = parse_ts(current_ts).timestamp()
        start = self.window_start if self.window_start is not None else current
        span = max(self.window_end - start, 1e-9)
        return f"{min(100.0, 100.0 * (current - start) / span):.1f}%"

    def summary(self) -> None:
        counts = self.stream.counts
        self.stream.logger.info(
            "Finished '%s': %d records, %d requests, %d retries, %d rate-limited (429), %.1f s",
            self.stream.name,
            counts["records"],
            counts["requests"],
            counts["retries"],
            counts["throttled"],
            time.monotonic() - self.started,
        )


JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _types_of(prop: dict) -> list[str]:
    """The JSON types a schema property allows (none known: any value)."""
    kind = prop.get("type", [])
    kinds = [kind] if isinstance(kind, str) else list(kind)
    for option in prop.get("anyOf", []):
        kinds += _types_of(option)
    return kinds if all(k in JSON_TYPES for k in kinds) else []


def _payload(response: requests.Response) -> dict:
    payload = getattr(response, "apixx_payload", None)
    return payload if isinstance(payload, dict) else orjson.loads(response.content)


def _request_id(response: requests.Response) -> str | None:
    return response.headers.get("X-Request-Id")


def _rid(response: requests.Response) -> str:
    return f"(request_id={_request_id(response)})"


def _error_fields(response: requests.Response) -> tuple[str, str, str | None]:
    """(code, message, request_id) from the error envelope, or a summary of a non-JSON body."""
    try:
        error = orjson.loads(response.content).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
    if not isinstance(error, dict) or not error:
        return "-", f"non-JSON error body ({kind}, {len(response.content)} bytes)", _request_id(
            response
        )
    message = " ".join(str(error.get("message", "")).split())  # keep it on one line
    return str(error.get("code", "-")), message, error.get("request_id") or _request_id(response)


def _retry_after(response: requests.Response) -> float:
    """Seconds to wait from Retry-After, else from X-RateLimit-Reset, else a minute."""
    value = response.headers.get("Retry-After")
    if value and value.strip().isdigit():
        return float(value.strip())
    reset = response.headers.get("X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(1.0, float(reset) - time.time())
    return 60.0


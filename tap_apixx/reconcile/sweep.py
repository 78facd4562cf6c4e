"""The source side of reconcile: every id and updated_at of an entity, through the tap's transport."""

from __future__ import annotations

import logging
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from tap_apixx.bookmarks import parse_ts, stamp_of
from tap_apixx.client import ApixxStream
from tap_apixx.error_policy import request_id
from tap_apixx.errors import ApiRequestError
from tap_apixx.pagination import MAX_PAGE_SIZE, Page, SeenAt, TieSafePaginator
from tap_apixx.streams import CanonicalStream, load_schema
from tap_apixx.transport import response_body

if t.TYPE_CHECKING:
    from tap_apixx.tap import TapApixx

SWEEP_FIELDS = "canonical_id,updated_at"  # the API always returns these two; nothing else
CLOCK_MARGIN_US = 1_000_000  # the Date header has whole seconds: start the cutoff 1 s earlier


def to_us(value: str | datetime) -> int:
    """Microseconds since the epoch of an RFC 3339 string or a datetime (naive = UTC)."""
    if isinstance(value, str):
        value = parse_ts(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> str:
    """RFC 3339 UTC with milliseconds (microseconds when the value has them)."""
    value = datetime.fromtimestamp(us / 1e6, tz=timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (
        f".{us % 1_000_000 // 1000:03d}Z" if us % 1000 == 0 else f".{us % 1_000_000:06d}Z"
    )


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PROGRESS_EVERY_SECONDS = 5.0
LOGGER = logging.getLogger("tap-apixx-reconcile")


class SweepProgress:
    """A progress line every few seconds: a million ids take minutes under the rate budget."""

    def __init__(self, entity: str) -> None:
        self.entity, self.last = entity, time.monotonic()

    def tick(self, ids: int, requests: int) -> None:
        if time.monotonic() - self.last >= PROGRESS_EVERY_SECONDS:
            self.last = time.monotonic()
            LOGGER.info("Sweeping '%s': %d ids so far, %d requests", self.entity, ids, requests)


@dataclass
class Sweep:
    """One entity's ids in APIXX (id -> updated_at in microseconds) and what reading them cost."""

    entity: str
    ids: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    seconds: float = 0.0


class IdSweepStream(CanonicalStream):
    """Lists an entity's ids with `?fields=canonical_id,updated_at`, 1000 a page.

    It is the tap's own stream class, so the requests go through the same pacer (the key's one
    budget), retries, error policy and tie-safe paginator as a sync; it only writes nothing:
    no RECORD, no STATE.
    """

    _LOG_REQUEST_METRICS = False  # one METRIC line per request would drown the report
    fields_param = SWEEP_FIELDS

    def __init__(self, tap: TapApixx, entity: str, since: str | None) -> None:
        super().__init__(tap=tap, name=entity, schema=load_schema(entity))
        self.since = since
        self.server_start: datetime | None = None  # server clock at our first request

    def get_new_paginator(self) -> TieSafePaginator:
        start = stamp_of(parse_ts(self.since)) if self.since else None
        return TieSafePaginator(
            self.name, MAX_PAGE_SIZE, start, SeenAt(), lookup=self.fetch_updated_at
        )

    def sweep(self) -> Sweep:
        """Every id with its latest updated_at; the paginator fails loudly rather than skip any."""
        started = time.monotonic()
        result = Sweep(self.name)
        paginator = self.get_new_paginator()
        progress = SweepProgress(self.name)
        while not paginator.finished:
            response = self.send(self._prepare_request(context=None, page=paginator), None)
            self._note_server_date(response)
            payload = response_body(response)
            page = Page(payload.get("data") or [], payload.get("next_cursor"), request_id(response))
            fresh = paginator.take(page)
            paginator.advance(page)  # type: ignore[arg-type]
            ids = result.ids
            for record in fresh:  # a record seen twice (it changed meanwhile): keep the latest
                us = to_us(record["updated_at"])
                if us > ids.get(record["canonical_id"], -1):
                    ids[record["canonical_id"]] = us
            self.counts["records"] += len(fresh)
            progress.tick(len(ids), self.counts["requests"])
        result.requests, result.retries = self.counts["requests"], self.counts["retries"]
        result.throttled, result.seconds = self.counts["throttled"], time.monotonic() - started
        return result

    def _note_server_date(self, response: t.Any) -> None:
        """The server's clock when it got our first request: its Date less the answer's time."""
        header = response.headers.get("Date")
        if self.server_start is None and header:
            try:
                self.server_start = parsedate_to_datetime(header) - response.elapsed
            except (TypeError, ValueError):
                pass


class IdLookupStream(ApixxStream):
    """`GET /{entity}/{id}` under the same transport, to confirm a row is gone before acting."""

    _LOG_REQUEST_METRICS = False

    def __init__(self, tap: TapApixx, entity: str) -> None:
        super().__init__(tap=tap, name=entity, schema=load_schema(entity))

    def exists(self, canonical_id: str) -> bool:
        """False on 404 (gone), True on 200; any other failure is the tap's one-line error."""
        try:
            self.get_by_id(canonical_id)
        except ApiRequestError as exc:
            if exc.status == 404:
                return False
            raise
        return True


class SweepRun:
    """Sweeps several entities under the tap's one pacer, `max_parallel_streams` at a time."""

    def __init__(self, tap: TapApixx, entities: list[str], since: dict[str, str | None]) -> None:
        self.tap = tap
        self.streams = {e: IdSweepStream(tap, e, since.get(e)) for e in entities}
        self.started_at = datetime.now(timezone.utc)
        self.seconds = 0.0

    def run(self) -> dict[str, Sweep]:
        """All sweeps; the first failure ends the run with its own one-line error."""
        self.started_at = datetime.now(timezone.utc)
        began = time.monotonic()
        workers = max(1, min(self.tap.parallel_streams, len(self.streams)))
        _ = self.tap.pacer  # made once, before the threads that share it
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
            futures = {e: pool.submit(s.sweep) for e, s in self.streams.items()}
            results = {e: f.result() for e, f in futures.items()}
        self.seconds = time.monotonic() - began
        return results

    @property
    def cutoff_us(self) -> int:
        """The sweep's start, on the earlier of our clock and the server's, less a margin.

        A record whose updated_at is at or after it changed while the sweep ran: left out.
        """
        started = to_us(self.started_at)
        dates = [to_us(s.server_start) for s in self.streams.values() if s.server_start]
        return min([started, *dates]) - CLOCK_MARGIN_US

    def requests(self) -> int:
        return sum(s.counts["requests"] for s in self.streams.values())

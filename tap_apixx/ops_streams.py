"""The ops API streams (flows, runs, connectors): the api_url base, same key, same pacer."""

from __future__ import annotations

import typing as t
from datetime import timedelta
from functools import cached_property

from tap_apixx.bookmarks import start_point
from tap_apixx.client import ApixxStream
from tap_apixx.output import OwnBookmark
from tap_apixx.pagination import OPS_MAX_PAGE_SIZE, StartingAfterPaginator
from tap_apixx.progress import SyncProgress
from tap_apixx.streams import load_schema
from tap_apixx.transport import response_body
from tap_apixx.window import mark_complete, parse_instant

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

DEFAULT_RUNS_LOOKBACK_HOURS = 24
OPEN_RUN_STATUSES = frozenset({"queued", "running"})  # may still change: hold the bookmark
RUN_STATUSES_WITH_ERRORS = frozenset({"failed", "partial"})  # only these have errors to fetch


class OpsStream(ApixxStream):
    """A list of the ops API, paged with `starting_after`, keyed by `id`, needing flows:read."""

    required_scope = "flows:read"
    primary_keys = ("id",)
    sync_last = True  # after the canonical streams
    url_setting = "api_url"

    @cached_property
    def page_limit(self) -> int:
        """`page_size`, capped at the ops lists' maximum (100)."""
        return min(int(self.config.get("page_size", OPS_MAX_PAGE_SIZE)), OPS_MAX_PAGE_SIZE)

    def get_new_paginator(self) -> StartingAfterPaginator:
        return StartingAfterPaginator()

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        return {"limit": self.page_limit, "starting_after": next_page_token}

    def request_records(self, context: Context | None) -> Iterator[dict]:
        progress = SyncProgress(self, self.start_from, self.end_before)
        if not self._starts_past_end():
            for record in super().request_records(context):
                self.counts["records"] += 1
                yield record
                stamp = record.get(self.replication_key) if self.replication_key else None
                progress.tick(stamp, stamp)
        if self.replication_key:
            mark_complete(self.stream_state)  # a windowed state now says its window is read whole
            self.state_manager.is_flushed = False
        progress.summary()

    @property
    def end_before(self) -> str | None:
        """end_date, for the streams it bounds (runs); full-table streams read everything."""
        return None

    def _starts_past_end(self) -> bool:
        start, end = self.start_from, self.end_before
        if start is None or end is None or parse_instant(start) < parse_instant(end):
            return False
        self.logger.info("Stream '%s': nothing to read before end_date %s", self.name, end)
        return True

    @property
    def start_from(self) -> str | None:
        """Where the list starts (None: from the beginning); full-table streams read it all."""
        return None

    def fetch_detail(self, object_id: str) -> dict[str, t.Any]:
        """The object's detail fields (`GET /<stream>/<id>`)."""
        return response_body(self.get_by_id(object_id))


class FlowsStream(OpsStream):
    """Flows, full table, each with the detail fields the list lacks (one request per flow)."""

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        return {**row, **self.fetch_detail(row["id"])}  # + connectors, schedule_detail


class ConnectorsStream(OpsStream):
    """Connectors, full table."""


class RunsStream(OwnBookmark, OpsStream):
    """Runs, incremental on started_at, re-reading `runs_lookback_hours` before the bookmark.

    A run changes after it starts (status, finished_at, counts), so each sync starts from the
    later of start_date and (bookmark - runs_lookback_hours), `from` being inclusive. The
    bookmark follows started_at run by run but stops at the first run still queued or running,
    so that run is re-read next time however long it takes (and, with it, everything after it).
    """

    replication_key = "started_at"
    is_sorted = True  # the API orders runs by started_at, then id
    check_sorted = False  # the window re-reads runs older than the bookmark on purpose

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_at: str | None = None  # started_at of the first open run seen this sync

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = {**super().get_url_params(context, next_page_token), "from": self.start_from}
        return {**params, "to": self.end_before} if self.end_before else params

    @property
    def end_before(self) -> str | None:
        """end_date: `to` (exclusive) on started_at, so the bookmark never passes it."""
        end = self.config.get("end_date")
        return str(end) if end else None

    @cached_property
    def start_from(self) -> str | None:
        """The later of start_date and (bookmark - runs_lookback_hours); None: every run."""
        hours = int(self.config.get("runs_lookback_hours", DEFAULT_RUNS_LOOKBACK_HOURS))
        bookmark = self.stream_state.get("replication_key_value")
        since = start_point(self.config.get("start_date"), bookmark, timedelta(hours=hours))
        self.logger.info("Syncing 'runs' started from %s", since or "the beginning")
        return since

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        if row.get("status") not in RUN_STATUSES_WITH_ERRORS:
            return {**row, "errors": []}
        return {**row, **self.fetch_detail(row["id"])}  # + errors

    def advance_bookmark(self, latest_record: dict, state: dict) -> None:
        """Bookmark = this run's started_at, unless an earlier run seen is still open."""
        if self.held_at is not None:
            return
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = latest_record["started_at"]
        if latest_record.get("status") in OPEN_RUN_STATUSES:
            self.held_at = latest_record["started_at"]


# stream name -> its class; each stream's JSON Schema is schemas/<name>.json
OPS_STREAMS: dict[str, type[OpsStream]] = {
    "flows": FlowsStream,
    "runs": RunsStream,
    "connectors": ConnectorsStream,
}


def ops_streams(tap: Tap) -> list[OpsStream]:
    """One stream per row of OPS_STREAMS, after the canonical ones."""
    return [cls(tap=tap, name=name, schema=load_schema(name)) for name, cls in OPS_STREAMS.items()]

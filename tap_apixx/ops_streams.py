"""The ops API streams (flows, runs, connectors): the api_url base, same key, same pacer."""

from __future__ import annotations

import json
import typing as t
from datetime import datetime, timedelta, timezone
from functools import cached_property
from urllib.parse import urlsplit

from singer_sdk.exceptions import RetriableAPIError

from tap_apixx.bookmarks import start_point
from tap_apixx.client import ApixxStream
from tap_apixx.error_policy import request_id, rid
from tap_apixx.errors import ApiRequestError
from tap_apixx.inputs import instant_problem, kind_of
from tap_apixx.output import OwnBookmark
from tap_apixx.pagination import OPS_MAX_PAGE_SIZE, BadRecordError, StartingAfterPaginator
from tap_apixx.progress import SyncProgress
from tap_apixx.schema_drift import DEFAULT_TYPE_ERRORS, SchemaDrift
from tap_apixx.streams import load_schema
from tap_apixx.transport import PAYLOAD_ATTR, response_body
from tap_apixx.window import mark_complete, parse_instant

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

DEFAULT_RUNS_LOOKBACK_HOURS = 24
GONE = frozenset({404, 410})  # a detail answering these was deleted after the list was read
OPEN_RUN_STATUSES = frozenset({"queued", "running"})  # may still change: hold the bookmark
RUN_STATUSES_WITH_ERRORS = frozenset({"failed", "partial"})  # only these have errors to fetch
MAX_SHOWN_ID = 80  # characters of an id in a message


class OpsStream(ApixxStream):
    """A list of the ops API, paged with `starting_after`, keyed by `id`, needing flows:read."""

    required_scope = "flows:read"
    primary_keys = ("id",)
    _page_request_id: str | None = None  # of the list page the records come from
    sync_last = True  # after the canonical streams
    url_setting = "api_url"

    @cached_property
    def page_limit(self) -> int:
        """`page_size`, capped at the ops lists' maximum (100)."""
        return min(int(self.config.get("page_size", OPS_MAX_PAGE_SIZE)), OPS_MAX_PAGE_SIZE)

    @cached_property
    def drift(self) -> SchemaDrift:
        """The schema guarantee of the canonical streams, record by record (the lists are
        small). A field the schema lacks is dropped with a warning, or stops the sync with
        `new_fields: fail`; `load` does not apply here (an ops table keeps its columns)."""
        new_fields = "fail" if self.config.get("new_fields") == "fail" else "warn"
        type_errors = self.config.get("type_errors", DEFAULT_TYPE_ERRORS)
        required = frozenset(self.schema.get("required", ()))
        return SchemaDrift(
            self.name,
            self.schema["properties"],
            self.selected_fields,
            self.logger,
            type_errors,
            new_fields=new_fields,
            required=required,
        )

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        """The row completed (`complete`), then made valid against the schema, or stopped."""
        record = self.complete(row)
        if record is not None:
            self.drift.check([record], self._page_request_id)
        return record

    def complete(self, row: dict) -> dict | None:
        """The row with whatever the list lacks (None: gone meanwhile, skip it)."""
        return row

    def get_new_paginator(self) -> StartingAfterPaginator:
        self._paginator = StartingAfterPaginator(self.name)
        return self._paginator

    def validate_response(self, response: requests.Response) -> None:
        """A list page must be `{"data": [...], "meta": {"has_more": bool}}`, a detail an object.

        A 200 without that shape is treated like a truncated body (retried); items without a
        usable id can be neither keyed nor paged past, so they stop the sync.
        """
        super().validate_response(response)
        body = getattr(response, PAYLOAD_ATTR, None)
        if not isinstance(body, dict):
            msg = f"{self.name}: HTTP 200 body is a JSON {kind_of(body)}, not an object {rid(response)}"
            raise RetriableAPIError(msg, response)
        if response.request.method == "GET" and self._is_list(response):
            self._check_list(body, response)

    def _is_list(self, response: requests.Response) -> bool:
        return urlsplit(response.request.url or "").path.rstrip("/").endswith(self.path)

    def _check_list(self, body: dict[str, t.Any], response: requests.Response) -> None:
        data, meta = body.get("data"), body.get("meta") or {}
        if not isinstance(data, list) or not isinstance(meta, dict):
            msg = f"{self.name}: HTTP 200 body without a 'data' list and a 'meta' object "
            raise RetriableAPIError(msg + rid(response), response)
        if meta.get("has_more") not in (True, False, None):
            msg = (
                f"{self.name}: the API sent meta.has_more as a JSON {kind_of(meta['has_more'])}, "
                f"not true or false {rid(response)}"
            )
            raise BadRecordError(msg)
        for index, item in enumerate(data):
            item_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item_id, str) or item_id.strip(".") == "":
                msg = (
                    f"{self.name}: the API sent an item without a usable id (item {index + 1} "
                    f"of {len(data)}, id {_name_id(item_id)}) {rid(response)}; stopping rather "
                    "than drop it"
                )
                raise BadRecordError(msg)

    def parse_response(self, response: requests.Response) -> Iterable[dict]:
        """The page's items, once each: an id met before means the paging goes round."""
        body = response_body(response)
        items = body["data"]
        self._page_request_id = request_id(response)
        self._paginator.check_page([item["id"] for item in items], self._page_request_id)
        if not items and (body.get("meta") or {}).get("has_more"):
            self.logger.warning(
                "%s: the API said has_more but sent no items %s; ending the list here",
                self.name,
                rid(response),
            )
        yield from items

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

    def fetch_detail(self, object_id: str) -> dict[str, t.Any] | None:
        """The object's detail fields (`GET /<stream>/<id>`).

        None when the object is gone (404 or 410): deleted between the list and this request.
        That is the ordinary race of a list-then-detail API, not a misconfiguration. A detail
        that names another object stops the sync: merged over the listed row, it would load
        one object twice and lose the one listed.
        """
        try:
            response = self.get_by_id(object_id)
        except ApiRequestError as exc:
            if exc.status not in GONE:
                raise
            self.logger.warning(
                "%s: %s was listed but is gone (HTTP %s on its detail, request_id=%s); skipping it",
                self.name,
                object_id,
                exc.status,
                exc.request_id,
            )
            return None
        detail = response_body(response)
        if "id" in detail and detail["id"] != object_id:  # it would replace the listed id
            msg = (
                f"{self.name}: the detail asked for {_name_id(object_id)} answered for id "
                f"{_name_id(detail['id'])} {rid(response)}; stopping rather than load it under "
                "another object's id"
            )
            raise BadRecordError(msg)
        return detail


class FlowsStream(OpsStream):
    """Flows, full table, each with the detail fields the list lacks (one request per flow)."""

    def complete(self, row: dict) -> dict | None:
        detail = self.fetch_detail(row["id"])  # + connectors, schedule_detail
        return None if detail is None else {**row, **detail}


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

    def complete(self, row: dict) -> dict | None:
        status = row.get("status")  # checked against the schema after this
        if not isinstance(status, str) or status not in RUN_STATUSES_WITH_ERRORS:
            return {**row, "errors": []}
        detail = self.fetch_detail(row["id"])  # + errors
        return None if detail is None else {**row, **detail}

    def advance_bookmark(self, latest_record: dict, state: dict) -> None:
        """Bookmark = this run's started_at, unless an earlier run seen is still open."""
        if self.held_at is not None:
            return
        problem = instant_problem(latest_record["started_at"], datetime.now(timezone.utc))
        if problem is not None:  # a state the next run would refuse: hold the bookmark here
            self.held_at = latest_record["started_at"]
            self.logger.warning(
                "runs: run %s started_at %s %s; the bookmark stays before it (this run is read "
                "again next time)",
                latest_record.get("id"),
                latest_record["started_at"],
                problem,
            )
            return
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = latest_record["started_at"]
        if latest_record.get("status") in OPEN_RUN_STATUSES:
            self.held_at = latest_record["started_at"]


def _name_id(value: t.Any) -> str:
    """An id as a message can show it: ASCII (look-alike characters differ), long ones cut."""
    if isinstance(value, (dict, list)):
        return f"a JSON {kind_of(value)}"
    text = ascii(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_SHOWN_ID else text[: MAX_SHOWN_ID - 1] + "…"


# stream name -> its class; each stream's JSON Schema is schemas/<name>.json
OPS_STREAMS: dict[str, type[OpsStream]] = {
    "flows": FlowsStream,
    "runs": RunsStream,
    "connectors": ConnectorsStream,
}


def ops_streams(tap: Tap) -> list[OpsStream]:
    """One stream per row of OPS_STREAMS, after the canonical ones."""
    return [cls(tap=tap, name=name, schema=load_schema(name)) for name, cls in OPS_STREAMS.items()]

"""Stream declarations: the 15 canonical entities as one table, and CanonicalStream."""

from __future__ import annotations

import json
import typing as t
from datetime import timedelta
from functools import cached_property, partial
from importlib import resources
from urllib.parse import urlparse

from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_apixx.bookmarks import SEEN_KEY, parse_stamp, start_stamp
from tap_apixx.client import ApixxStream
from tap_apixx.error_policy import request_id, rid
from tap_apixx.errors import ApiRequestError
from tap_apixx.new_fields import DEFAULT_NEW_FIELDS, NEW_FIELDS_KEY
from tap_apixx.output import PageOutput
from tap_apixx.pagination import MAX_PAGE_SIZE, Page, SeenAt, TieSafePaginator
from tap_apixx.prefetch import NextPage
from tap_apixx.progress import SyncProgress
from tap_apixx.schema_drift import DEFAULT_TYPE_ERRORS, SchemaDrift
from tap_apixx.settings import DEFAULT_LOOKBACK_MINUTES
from tap_apixx.transport import PAYLOAD_ATTR, response_body
from tap_apixx.window import Window, mark_complete, parse_instant

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_apixx.bookmarks import Stamp

# entity -> what it holds. Each becomes a stream of that name, keyed by canonical_id and
# replicated incrementally on updated_at; its JSON Schema is schemas/<entity>.json.
CANONICAL_ENTITIES: dict[str, str] = {
    "customer": "Buyers of the tenant's products (B2C or B2B).",
    "contact": "People at accounts (CRM contacts).",
    "account": "Companies the tenant sells to (CRM accounts).",
    "lead": "Prospects not yet qualified.",
    "opportunity": "Deals in the sales pipeline of an account.",
    "product": "Catalog products.",
    "product_variant": "Sellable variants (size, colour) of a product.",
    "order": "Customer orders.",
    "order_line_item": "Lines of an order: a variant, quantity and price.",
    "invoice": "Invoices issued for orders.",
    "payment": "Payments against invoices.",
    "subscription": "Recurring plans of a customer for a product.",
    "refund": "Refunds of payments.",
    "shipment": "Shipments of orders.",
    "inventory": "Stock of a variant at a location.",
}


def load_schema(entity: str) -> dict[str, t.Any]:
    """The JSON Schema shipped in tap_apixx/schemas/<entity>.json."""
    text = (resources.files("tap_apixx") / "schemas" / f"{entity}.json").read_text()
    return json.loads(text)


class CanonicalStream(PageOutput, ApixxStream):
    """One canonical entity of the data API, synced incrementally on updated_at."""

    primary_keys = ("canonical_id",)
    replication_key = "updated_at"
    is_sorted = True  # the API returns ascending updated_at; the paginator verifies it
    check_sorted = False  # lookback re-reads records older than the bookmark on purpose
    # Records arrive as plain JSON (orjson); SchemaDrift makes each page valid against the
    # schema (unknown fields dropped, wrong types coerced or nulled), so the SDK's per-record
    # recursive conformance would only cost time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    STATE_MSG_FREQUENCY = 10**9  # STATE is written after every page instead (_checkpoint)

    @cached_property
    def fields_param(self) -> str | None:
        """`?fields=` for the selected properties; None when all are selected."""
        selected = [p for p in self.schema["properties"] if p in self.selected_fields]
        if len(selected) == len(self.schema["properties"]):
            return None  # ask for everything, so new fields reach us and get reported
        return ",".join(dict.fromkeys(["canonical_id", "updated_at", *selected]))

    @cached_property
    def drift(self) -> SchemaDrift:
        props = self.schema["properties"]
        type_errors = self.config.get("type_errors", DEFAULT_TYPE_ERRORS)
        new_fields = self.config.get("new_fields") or DEFAULT_NEW_FIELDS
        return SchemaDrift(
            self.name, props, self.selected_fields, self.logger, type_errors, new_fields=new_fields
        )

    @cached_property
    def window(self) -> Window:
        return Window.from_config(self.config)

    # New fields (new_fields: load)

    def add_properties(self, added: dict[str, t.Any]) -> None:
        """Extend the schema (and the catalog's, and the stream map's) with new properties.

        They are recorded in the stream's state (`new_fields`), so that later runs declare
        them from the start with the same types, and a value that turns null is loaded too.
        """
        for attr in ("_schema", "_input_schema"):
            schema = getattr(self, attr, None)
            if schema is not None:  # a new dict: the SDK's mapper compares schemas by value
                setattr(self, attr, {**schema, "properties": {**schema["properties"], **added}})
        mapper = self._tap.mapper
        raw = mapper.stream_maps[self.name][0].raw_schema
        raw = {**raw, "properties": {**raw["properties"], **added}}
        mapper.register_raw_stream_schema(self.name, raw, self.primary_keys)
        self._stream_maps = mapper.stream_maps[self.name]
        recorded = self.stream_state.get(NEW_FIELDS_KEY) or {}
        self.stream_state[NEW_FIELDS_KEY] = {**recorded, **added}
        for cached in ("selected_fields", "fields_param"):
            self.__dict__.pop(cached, None)

    def restore_new_fields(self) -> None:
        """Declare the fields earlier runs added (before this run's SCHEMA message)."""
        recorded = self.stream_state.get(NEW_FIELDS_KEY) or {}
        missing = {k: v for k, v in recorded.items() if k not in self.schema["properties"]}
        if missing:
            self.add_properties(missing)
            self.logger.info(
                "Stream '%s': fields added by earlier runs: %s",
                self.name,
                ", ".join(sorted(missing)),
            )

    def validate_response(self, response: requests.Response) -> None:
        """A 200 must carry a `data` list; one without it is treated like a truncated body."""
        super().validate_response(response)
        url = getattr(response.request, "url", None)
        if url and not urlparse(url).path.endswith(self.path):
            return  # GET by id (get_by_id): the body is one record, not a page
        payload = getattr(response, PAYLOAD_ATTR, None)
        if not (isinstance(payload, dict) and isinstance(payload.get("data"), list)):
            got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            msg = f"{self.name}: HTTP {response.status_code} body without a 'data' list "
            raise RetriableAPIError(msg + f"(got {got}) {rid(response)}", response)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        token = next_page_token
        return {"limit": token.limit, "updated_since": token.since, "fields": self.fields_param}

    # Start point and state

    def get_new_paginator(self) -> TieSafePaginator:
        start, resume = self._start_point()
        page_size = int(self.config.get("page_size", MAX_PAGE_SIZE))
        return TieSafePaginator(self.name, page_size, start, resume, lookup=self.fetch_updated_at)

    def _start_point(self) -> tuple[Stamp | None, SeenAt]:
        """The later of start_date and (bookmark - lookback), and the ids seen at the bookmark."""
        state = self.stream_state
        self._bookmark_in = state.get("replication_key_value")
        self._seen_in = state.get(SEEN_KEY)
        minutes = float(self.config.get("lookback_minutes", DEFAULT_LOOKBACK_MINUTES))
        start = start_stamp(
            self.config.get("start_date"), self._bookmark_in, timedelta(minutes=minutes)
        )
        self.logger.info(
            "Syncing '%s' from %s", self.name, start.text if start else "the beginning"
        )
        return start, SeenAt.from_state(self._seen_in)

    def fetch_updated_at(self, canonical_id: str) -> tuple[str | None, str | None]:
        """GET /{entity}/{id} for a boundary check: its updated_at now (None: gone), request_id."""
        try:
            response = self.get_by_id(canonical_id)
        except ApiRequestError as exc:
            if exc.status == 404:
                return None, exc.request_id
            raise
        return response_body(response).get("updated_at"), request_id(response)

    def _checkpoint(self, paginator: TieSafePaginator) -> None:
        """After each page: its records, then the bookmark at its last instant, then STATE."""
        seen, bookmark_in = paginator.boundary, parse_stamp(self._bookmark_in)
        if seen.stamp is None:
            return
        if bookmark_in and seen.stamp.ns < bookmark_in.ns:
            value, seen_state = self._bookmark_in, self._seen_in  # still inside the lookback
        else:
            value, seen_state = seen.ts, seen.to_state()
        bookmark = {"replication_key": self.replication_key, "replication_key_value": value}
        self.commit_page({**bookmark, SEEN_KEY: seen_state})

    # The sync loop

    def request_records(self, context: Context | None) -> Iterator[dict]:
        paginator = self.get_new_paginator()
        progress = SyncProgress(self, paginator.current_value.since, self.window.end)
        reached_end = self._starts_past_end(paginator.current_value.since)
        # --test reads one record: no page beyond the first is asked for
        ahead = NextPage(self.name) if self.ABORT_AT_RECORD_COUNT is None else None
        try:
            yield from self._pages(context, paginator, progress, ahead, reached_end)
        finally:
            if ahead is not None:
                ahead.abandon()  # stopped early (an error, a signal): its answer is not read
        mark_complete(self.stream_state)  # a windowed state now says its window is read whole
        self.state_manager.is_flushed = False
        self.drift.summary()
        progress.summary(paginator.costs.describe())

    def _pages(
        self,
        context: Context | None,
        paginator: TieSafePaginator,
        progress: SyncProgress,
        ahead: NextPage | None,
        reached_end: bool,
    ) -> Iterator[dict]:
        """Page by page: take, check, yield, checkpoint; the next request is already out."""
        while not (paginator.finished or reached_end):
            if ahead is not None and ahead.pending:
                response = ahead.take()
            else:
                prepared = self._prepare_request(context=context, page=paginator)
                response = self.send(prepared, context)
            payload = response_body(response)
            records, cursor = payload.get("data") or [], payload.get("next_cursor")
            inside = self.window.cut(records, "updated_at")  # end_date: the rest is not ours
            reached_end = inside < len(records)
            page = Page(records[:inside], cursor, request_id(response))
            fresh = paginator.take(page)
            if not reached_end:
                paginator.advance(page)  # type: ignore[arg-type]  # may refuse a giant tie group
            added = self.drift.check(fresh, page.request_id)
            if added:
                self.add_properties(added)
                self._write_schema_message()  # before the first record that has them
            # the page passed every check that can stop the sync: ask for the next one now,
            # while this one is framed and written (no request is left behind by a failed page)
            if ahead is not None and not (reached_end or paginator.finished):
                ahead.start(
                    partial(
                        self.send,
                        self._prepare_request(context=context, page=paginator),
                        context,
                    )
                )
            self.counts["records"] += len(fresh)
            yield from fresh
            self._checkpoint(paginator)
            progress.tick(paginator.last_ts, records[0].get("updated_at") if records else None)

    def _starts_past_end(self, since: str | None) -> bool:
        """With end_date: True when the bookmark is already at or past it (nothing to read)."""
        if since is None or self.window.end is None:
            return False
        if parse_instant(since) < parse_instant(self.window.end):
            return False
        self.logger.info(
            "Stream '%s': nothing to read before end_date %s", self.name, self.window.end
        )
        return True


def canonical_streams(tap: Tap) -> list[CanonicalStream]:
    """One CanonicalStream per row of CANONICAL_ENTITIES."""
    return [
        CanonicalStream(tap=tap, name=entity, schema=load_schema(entity))
        for entity in CANONICAL_ENTITIES
    ]

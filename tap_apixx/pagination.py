"""Tie-safe paging over `updated_since`, correct whatever the server's cursor semantics."""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field

from singer_sdk.pagination import BaseAPIPaginator

from tap_apixx.errors import OutOfOrderError, TapApixxError, TieGroupTooLargeError
from tap_apixx.transport import response_body

MAX_PAGE_SIZE = 1000  # documented maximum `limit` of the canonical data API
MAX_BOOKMARK_IDS = 2 * MAX_PAGE_SIZE  # ids kept in state; trimming costs duplicates, never loss
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z", re.IGNORECASE)


class BadRecordError(TapApixxError):
    """A record without a usable canonical_id or updated_at: it can be neither keyed nor paged."""


@dataclass(frozen=True)
class PageRequest:
    """What to ask for next: records with updated_at >= since (inclusive), at most limit."""

    since: str | None
    limit: int


@dataclass
class Page:
    """One parsed response of the list endpoint."""

    records: list[dict[str, t.Any]]
    next_cursor: str | None
    request_id: str | None = None


@dataclass
class SeenAt:
    """Ids already emitted (or known emitted) whose updated_at equals `ts`."""

    ts: str | None = None
    ids: set[str] = field(default_factory=set)

    def holds(self, ts: str, canonical_id: str) -> bool:
        return ts == self.ts and canonical_id in self.ids

    def to_state(self) -> dict[str, t.Any]:
        return {"updated_at": self.ts, "ids": sorted(self.ids)[:MAX_BOOKMARK_IDS]}

    @classmethod
    def from_state(cls, value: t.Any) -> SeenAt:
        if not isinstance(value, dict) or not value.get("updated_at"):
            return cls()
        return cls(value["updated_at"], set(value.get("ids") or ()))


class TieSafePaginator(BaseAPIPaginator[PageRequest]):
    """Pages by re-reading from the last updated_at seen, never by trusting `cursor`.

    The next request starts *at* (not after) the last page's final updated_at, and the ids
    already seen at that instant are skipped. A full page holding a single instant is a tie
    group at least as large as the page: that step is retried with the API's largest page,
    and if even that is one instant, no client can page through it, so we fail loudly.
    """

    def __init__(
        self,
        entity: str,
        page_size: int,
        since: str | None = None,
        resume: SeenAt | None = None,
        *,
        strict: bool = False,
    ) -> None:
        super().__init__(PageRequest(since, page_size))
        self.timestamp = RFC3339 if strict else re.compile(".")  # strict: updated_at is RFC 3339
        self.entity = entity
        self.page_size = page_size
        self.resume = resume or SeenAt()  # from the previous run's state
        self.boundary = SeenAt()  # the instant the current page request starts at
        self.last_ts: str | None = None

    def take(self, page: Page) -> list[dict[str, t.Any]]:
        """Return the records of `page` not emitted before, and remember the new boundary."""
        fresh: list[dict[str, t.Any]] = []
        last = self.last_ts or ""
        boundary, resume = self.boundary, self.resume
        for index, record in enumerate(page.records):
            cid, ts = _keys(record)
            if not (isinstance(cid, str) and cid and isinstance(ts, str) and self.timestamp.match(ts)):
                self._raise_bad_record(index, record, page)
            if ts < last:
                self._raise_out_of_order(ts, last, page)
            last = ts
            if not (boundary.holds(ts, cid) or resume.holds(ts, cid)):
                fresh.append(record)
        if page.records:
            self.last_ts = last
            self._move_boundary(page.records, last)
        return fresh

    def _move_boundary(self, records: list[dict[str, t.Any]], ts: str) -> None:
        ids = {r["canonical_id"] for r in _tail_at(records, ts)}
        if self.boundary.ts == ts:
            ids |= self.boundary.ids
        if self.resume.ts == ts:
            ids |= self.resume.ids
        self.boundary = SeenAt(ts, ids)

    def has_more(self, response: Page) -> bool:  # type: ignore[override]
        """More pages exist unless the API says so, or a short page made no progress."""
        page = response
        if not page.records or page.next_cursor is None:
            return False
        full = len(page.records) >= self.current_value.limit
        return full or page.records[-1]["updated_at"] != self.current_value.since

    def get_next(self, response: Page) -> PageRequest:  # type: ignore[override]
        """Start the next page at the last instant seen; widen the page for a big tie group."""
        page = response
        first_ts, last_ts = page.records[0]["updated_at"], page.records[-1]["updated_at"]
        full = len(page.records) >= self.current_value.limit
        if not (full and first_ts == last_ts):
            return PageRequest(last_ts, self.page_size)
        if self.current_value.limit >= MAX_PAGE_SIZE:
            self._raise_tie_too_large(last_ts, page)
        return PageRequest(last_ts, MAX_PAGE_SIZE)

    def _raise_tie_too_large(self, ts: str, page: Page) -> t.NoReturn:
        msg = (
            f"{self.entity}: at least {MAX_PAGE_SIZE} records share updated_at {ts}, more than "
            f"the API's largest page ({MAX_PAGE_SIZE}), so no client can page through them "
            f"without skipping some (request_id={page.request_id}). Ask APIXX support to "
            "re-stamp this bulk import, or set start_date after it to skip it knowingly."
        )
        raise TieGroupTooLargeError(msg)

    def _raise_bad_record(self, index: int, record: t.Any, page: Page) -> t.NoReturn:
        cid, ts = _keys(record)
        problem = (
            f"a record without a canonical_id (got {cid!r})"
            if not (isinstance(cid, str) and cid)
            else f"record {cid} with updated_at {ts!r}, not an RFC 3339 timestamp"
        )
        msg = (
            f"{self.entity}: the API sent {problem}, record {index + 1} of {len(page.records)} "
            f"in the page (request_id={page.request_id}); stopping rather than drop it or move "
            "the bookmark past it."
        )
        raise BadRecordError(msg)

    def _raise_out_of_order(self, ts: str, last: str, page: Page) -> t.NoReturn:
        msg = (
            f"{self.entity}: the API returned updated_at {ts} after {last}, not ascending "
            f"(request_id={page.request_id}); stopping rather than risk losing records."
        )
        raise OutOfOrderError(msg)


def _keys(record: t.Any) -> tuple[t.Any, t.Any]:
    """(canonical_id, updated_at) of a record, (None, None) if it is not even an object."""
    if not isinstance(record, dict):
        return None, None
    return record.get("canonical_id"), record.get("updated_at")


def _tail_at(records: list[dict[str, t.Any]], ts: str) -> t.Iterator[dict[str, t.Any]]:
    """The trailing records of a sorted page whose updated_at equals `ts`."""
    for record in reversed(records):
        if record["updated_at"] != ts:
            return
        yield record


OPS_MAX_PAGE_SIZE = 100  # documented maximum `limit` of the ops lists (flows, runs, connectors)


class StartingAfterPaginator(BaseAPIPaginator[str | None]):
    """Pages an ops list with `starting_after=<id of the last item>` until `meta.has_more` is false.

    The token is the id to pass as `starting_after` (None for the first page). A page that says
    `has_more` but holds no items cannot be paged further, so it ends the list too.
    """

    def __init__(self) -> None:
        super().__init__(None)

    def has_more(self, response: t.Any) -> bool:
        body = response_body(response)
        return bool((body.get("meta") or {}).get("has_more")) and bool(body.get("data"))

    def get_next(self, response: t.Any) -> str | None:
        return response_body(response)["data"][-1]["id"]

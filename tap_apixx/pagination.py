"""Paging over `updated_since` that loses no record whatever the server's semantics."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field
from operator import itemgetter

from singer_sdk.pagination import BaseAPIPaginator

from tap_apixx.bookmarks import (
    EARLIEST_NS,
    Stamp,
    format_stamp,
    instant_ns,
    page_instants,
    parse_stamp,
)
from tap_apixx.errors import (
    BoundaryCheckError,
    OutOfOrderError,
    PagingStalledError,
    PagingStuckError,
    TapApixxError,
    TieGroupTooLargeError,
)
from tap_apixx.transport import response_body

MAX_PAGE_SIZE = 1000  # documented maximum `limit` of the canonical data API
MAX_BOOKMARK_IDS = 2 * MAX_PAGE_SIZE  # ids kept in state; trimming costs duplicates, never loss
DEFAULT_DIGITS = 3  # fraction digits of the contract's updated_at (ms), until records show more


class BadRecordError(TapApixxError):
    """A record without a usable canonical_id or updated_at: it can be neither keyed nor paged."""


@dataclass(frozen=True)
class PageRequest:
    """What to ask for next: `updated_since` (as sent) and `limit`."""

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
    """Ids already emitted (or known emitted) whose updated_at is the instant of `ts`."""

    ts: str | None = None
    ids: set[str] = field(default_factory=set)

    @property
    def stamp(self) -> Stamp | None:
        return parse_stamp(self.ts)

    def to_state(self) -> dict[str, t.Any]:
        return {"updated_at": self.ts, "ids": sorted(self.ids)[:MAX_BOOKMARK_IDS]}

    @classmethod
    def from_state(cls, value: t.Any) -> SeenAt:
        if not isinstance(value, dict) or not parse_stamp(value.get("updated_at")):
            return cls()
        return cls(value["updated_at"], set(value.get("ids") or ()))


@dataclass
class PagingCosts:
    """What reading whole tie groups cost this stream, for the sync summary."""

    boundaries: int = 0  # requests that started at a previous page's last instant
    reread: int = 0  # records served again (overlap at a boundary), not emitted again
    widened: int = 0  # requests repeated with the largest page: a tie group filled a page
    relearned: int = 0  # requests repeated once the server showed `updated_since` is inclusive
    verified: int = 0  # GET /{entity}/{id}: ids missing at a boundary, checked one by one

    @property
    def extra_requests(self) -> int:
        return self.widened + self.relearned + self.verified

    def describe(self) -> str:
        per = self.extra_requests / self.boundaries if self.boundaries else 0.0
        return (
            f"{self.boundaries} page boundaries, {self.extra_requests} extra requests "
            f"({per:.2f} per boundary: {self.widened} widened, {self.relearned} relearned, "
            f"{self.verified} id checks), {self.reread} records re-read"
        )


# What `lookup(canonical_id)` answers: the record's updated_at now (None: gone, 404), request_id.
Lookup = t.Callable[[str], tuple[str | None, str | None]]


class TieSafePaginator(BaseAPIPaginator[PageRequest]):
    """Pages by re-reading from the last instant seen, never by trusting `cursor`.

    Each request asks `updated_since` = the last page's final instant minus the smallest unit
    the timestamps show, so an exclusive (`>`) and an inclusive (`>=`) server both return the
    whole tie group at that instant; records before it and ids already emitted at it are
    skipped. Once a server answers with a record at exactly the `updated_since` asked, it is
    inclusive and later requests ask for the instant itself (nothing to step over).

    Every answer is checked: the ids already read at the boundary instant must come back
    (unless `GET` by id shows them updated later or gone), records must ascend and never
    precede `updated_since`, and every request must make progress. A tie group that fills a
    page is read again with the API's largest page; one larger than that is an error.
    """

    def __init__(
        self,
        entity: str,
        page_size: int,
        start: Stamp | None = None,
        resume: SeenAt | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        self.entity = entity
        self.page_size = page_size
        self.lookup = lookup
        self.costs = PagingCosts()
        resume = resume if resume and resume.stamp else SeenAt()
        # the unit to step back: the finest the records show (a bookmark is a record's stamp)
        self.digits_seen: int | None = resume.stamp.digits if resume.stamp else None
        self.inclusive = False  # learned from an answer, never assumed
        self.floor = start  # records before it are not emitted: read before, or before start
        self.boundary = SeenAt()  # the floor's instant and the ids read (and emitted) there
        self.resume = SeenAt()  # the previous run's bookmark, while paging has not reached it
        self.resume_read: set[str] = set()  # ids read this run at the resume instant
        if resume.stamp and start and resume.stamp.ns == start.ns:
            self.boundary = resume  # no lookback: the first page re-reads the bookmark
        elif resume.stamp and (start is None or resume.stamp.ns > start.ns):
            self.resume = resume
        self.last_ts: str | None = None
        self.stepped_back = False
        super().__init__(self._request(start, page_size))

    @property
    def digits(self) -> int:
        """Fraction digits of the API's updated_at: the most any record showed, else ms."""
        return DEFAULT_DIGITS if self.digits_seen is None else self.digits_seen

    # Building requests

    def _request(self, floor: Stamp | None, limit: int) -> PageRequest:
        """Ask from `floor`, stepping back one unit unless the server is known inclusive."""
        if floor is None:
            self.stepped_back = False
            return PageRequest(None, limit)
        self.stepped_back = not self.inclusive
        unit = 10 ** (9 - self.digits)
        since = floor.ns - unit if self.stepped_back else floor.ns - floor.ns % unit
        return PageRequest(format_stamp(since, self.digits), limit)

    # Reading a page

    def take(self, page: Page) -> list[dict[str, t.Any]]:
        """Return the records of `page` not emitted before; check it; plan the next request."""
        records, stamps = page.records, self._stamps(page)
        floor, known = self.floor, self.boundary.ids if self.boundary.ts else set()
        start = self._past_floor(page, stamps)  # records before it: at or before the floor
        at_floor = {
            r["canonical_id"] for r, ns in zip(records[:start], stamps) if floor and ns == floor.ns
        }
        new_at_floor = at_floor - known
        fresh = [r for r in records[:start] if r["canonical_id"] in new_at_floor]
        self.costs.reread += start - len(fresh)
        later = dict(zip(map(itemgetter("canonical_id"), records[start:]), stamps[start:]))
        resume = self.resume.stamp
        if resume and stamps and start < len(stamps) and stamps[start] <= resume.ns <= stamps[-1]:
            fresh += [
                r for r, ns in zip(records[start:], stamps[start:]) if not self._resumed(ns, r)
            ]
        else:
            fresh += records[start:]
        end = page.next_cursor is None or not records
        if floor is not None and known and (later or end):  # the page read past the floor
            self._check_came_back(floor, known - at_floor, later, stamps, page)
        self._check_resume(stamps, end, later, page)
        self._plan_next(page, stamps, at_floor | known)
        return fresh

    def _stamps(self, page: Page) -> list[int]:
        """The instant (ns) of every record, each checked to have an id and to ascend."""
        usual = page_instants(page.records)  # the whole page at once, when it is in the usual form
        if usual is not None:
            self.digits_seen = max(self.digits_seen or 0, usual[1])
            return usual[0]
        stamps: list[int] = []
        last_text, last_ns, digits = None, EARLIEST_NS, self.digits_seen or 0
        for index, record in enumerate(page.records):
            if type(record) is not dict:
                self._raise_bad_record(index, record, page)
            ts = record.get("updated_at")
            if ts != last_text or not isinstance(ts, str):  # a tie repeats the previous instant
                parsed = instant_ns(ts)
                if parsed is None:
                    self._raise_bad_record(index, record, page)
                if parsed[0] < last_ns:
                    self._raise_out_of_order(ts, last_text, page)
                (last_ns, found), last_text = parsed, ts
                digits = max(digits, found)
            cid = record.get("canonical_id")
            if not (isinstance(cid, str) and cid):
                self._raise_bad_record(index, record, page)
            stamps.append(last_ns)
        if stamps:
            self.digits_seen = digits
        return stamps

    def _past_floor(self, page: Page, stamps: list[int]) -> int:
        """Index of the first record past the floor; checks the records before it against
        `updated_since` (none may precede it; one at it shows an inclusive server)."""
        since = parse_stamp(self.current_value.since)
        bound = max(since.ns if since else EARLIEST_NS, self.floor.ns if self.floor else EARLIEST_NS)
        index = 0
        while index < len(stamps) and stamps[index] <= bound:
            if since is not None and stamps[index] <= since.ns:
                self._check_not_before_since(stamps[index], page.records[index], since, page)
            index += 1
        return index

    def _check_not_before_since(
        self, ns: int, record: dict[str, t.Any], since: Stamp, page: Page
    ) -> None:
        if ns == since.ns and self.stepped_back:
            self.inclusive = True  # an exclusive server never returns the instant asked
            return
        if ns < since.ns:
            msg = (
                f"{self.entity}: asked updated_since={since.text}, the API returned a record "
                f"updated at {record['updated_at']}, before that instant (request_id="
                f"{page.request_id}); it does not filter as the tap assumes, so paging could "
                "skip records. Stopping."
            )
            raise BoundaryCheckError(msg)

    def _resumed(self, ns: int, record: dict[str, t.Any]) -> bool:
        """True for an id the previous run already emitted at its bookmark's instant."""
        resume = self.resume.stamp
        if resume is None or ns != resume.ns:
            return False
        self.resume_read.add(record["canonical_id"])
        return record["canonical_id"] in self.resume.ids

    # The boundary checks

    def _check_came_back(
        self, floor: Stamp, missing: set[str], later: dict[str, int], stamps: list[int], page: Page
    ) -> None:
        """Ids read at the boundary that the re-read did not return must have moved or gone."""
        unexplained = self._unexplained(floor, missing, later)
        if not unexplained:
            return
        known, lost = len(self.boundary.ids), len(unexplained)
        if not stamps or stamps[0] > floor.ns:
            first = page.records[0]["updated_at"] if stamps else "nothing"
            detail = (
                f"the page asked from updated_since={self.current_value.since} starts at {first}, "
                f"after the boundary {floor.text}, and {lost} of the {known} ids already read "
                "there did not come back"
            )
        else:
            detail = f"{lost} of the {known} ids already read at the boundary {floor.text} did not come back"
        self._raise_skipped(detail, unexplained, page)

    def _check_resume(
        self, stamps: list[int], end: bool, later: dict[str, int], page: Page
    ) -> None:
        """Once paging passes the bookmark's instant, the ids emitted there before must be back."""
        resume = self.resume.stamp
        if resume is None or not (end or (stamps and stamps[-1] > resume.ns)):
            return
        emitted, missing = len(self.resume.ids), self.resume.ids - self.resume_read
        unexplained = self._unexplained(resume, missing, later)
        self.resume = SeenAt()  # checked once; the boundary checks take over
        if unexplained:
            detail = (
                f"{len(unexplained)} of the {emitted} ids emitted at the "
                f"bookmark {resume.text} of the previous run did not come back"
            )
            self._raise_skipped(detail, unexplained, page)

    def _unexplained(self, at: Stamp, missing: set[str], later: dict[str, int]) -> dict[str, str]:
        """Missing ids that were not updated past `at` nor deleted: id -> what GET shows."""
        unexplained: dict[str, str] = {}
        for cid in sorted(missing):
            if cid in later:
                continue  # read again in this page, with a later updated_at
            if self.lookup is None:
                unexplained[cid] = "not looked up"
                continue
            self.costs.verified += 1
            now, request_id = self.lookup(cid)
            stamp = parse_stamp(now)
            if now is None or (stamp and stamp.ns > at.ns):
                continue  # gone (404) or updated since: the list was right to leave it out
            unexplained[cid] = f"updated_at {now}, request_id={request_id}"
        return unexplained

    def _raise_skipped(self, detail: str, unexplained: dict[str, str], page: Page) -> t.NoReturn:
        cid, shows = next(iter(unexplained.items()))
        msg = (
            f"{self.entity}: records could have been skipped: {detail} (request_id="
            f"{page.request_id}), and GET by id shows them neither updated later nor deleted "
            f"(e.g. {cid}: {shows}). The server does not page as the tap assumes; stopping "
            "rather than move on."
        )
        raise BoundaryCheckError(msg)

    # Planning the next request

    def _plan_next(self, page: Page, stamps: list[int], at_floor: set[str]) -> None:
        """Move the boundary to the page's last instant and choose the next request."""
        asked, floor = self.current_value, self.floor
        if stamps and (floor is None or stamps[-1] > floor.ns):
            last = parse_stamp(page.records[-1]["updated_at"])
            assert last is not None  # checked by _stamps
            tail = set()
            for record, ns in zip(reversed(page.records), reversed(stamps)):
                if ns != last.ns:
                    break
                tail.add(record["canonical_id"])
            self.floor, self.boundary, self.last_ts = last, SeenAt(last.text, tail), last.text
            if self.resume.stamp and self.resume.stamp.ns == last.ns:
                self.boundary.ids |= self.resume.ids  # emitted by the previous run: the
                self.resume = SeenAt()  # boundary check of the next page covers them now
            limit = MAX_PAGE_SIZE if len(self.boundary.ids) >= self.page_size else self.page_size
            self._next = None if page.next_cursor is None else self._request(last, limit)
            self.costs.boundaries += self._next is not None
        elif floor is not None and stamps:
            self.boundary = SeenAt(floor.text, at_floor)
            self._next = self._stalled(page, stamps, floor, asked)
        else:
            self._next = None  # an empty page: nothing is left

    def _stalled(
        self, page: Page, stamps: list[int], floor: Stamp, asked: PageRequest
    ) -> PageRequest | None:
        """The page got no further than the boundary: read it again, wider or from the instant."""
        full = len(page.records) >= asked.limit
        if page.next_cursor is None or not full:
            return None  # fewer than asked and none past the boundary: nothing is left
        if self.inclusive and self.stepped_back:
            self.costs.relearned += 1  # the unit stepped over held a page of its own
            return self._request(floor, asked.limit)
        if asked.limit < MAX_PAGE_SIZE:
            self.costs.widened += 1
            return self._request(floor, MAX_PAGE_SIZE)
        if stamps.count(floor.ns) >= asked.limit:
            self._raise_tie_too_large(floor, page)
        msg = (
            f"{self.entity}: paging made no progress past {floor.text}: a full page of "
            f"{len(page.records)} records from updated_since={asked.since} held none after it "
            f"(request_id={page.request_id}). Stopping rather than skip records."
        )
        raise PagingStalledError(msg)

    def has_more(self, response: Page) -> bool:  # type: ignore[override]
        return self._next is not None

    def get_next(self, response: Page) -> PageRequest | None:  # type: ignore[override]
        return self._next

    # Errors

    def _raise_tie_too_large(self, floor: Stamp, page: Page) -> t.NoReturn:
        msg = (
            f"{self.entity}: at least {MAX_PAGE_SIZE} records share updated_at {floor.text}, more "
            f"than the API's largest page ({MAX_PAGE_SIZE}), so no client can page through them "
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

    def _raise_out_of_order(self, ts: t.Any, last: t.Any, page: Page) -> t.NoReturn:
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


OPS_MAX_PAGE_SIZE = 100  # documented maximum `limit` of the ops lists (flows, runs, connectors)


class StartingAfterPaginator(BaseAPIPaginator[str | None]):
    """Pages an ops list with `starting_after=<id of the last item>` until `meta.has_more` is false.

    The token is the id to pass as `starting_after` (None for the first page). A page that says
    `has_more` but holds no items cannot be paged further, so it ends the list too. Paging must
    move forward: an id met again (a repeated page, a cursor going round a cycle) stops the
    list with PagingStuckError, before the repeated items are emitted.
    """

    def __init__(self, stream: str = "ops list") -> None:
        super().__init__(None)
        self.stream = stream
        self.seen: set[str] = set()  # every id met so far, on this sync of the list

    def check_page(self, ids: list[str], request_id: str | None) -> None:
        """Stop if this page holds an id met before (on it or an earlier page)."""
        for item_id in ids:
            if item_id in self.seen:
                self._stuck(item_id, request_id)
            self.seen.add(item_id)

    def _stuck(self, item_id: str, request_id: str | None) -> t.NoReturn:
        msg = (
            f"{self.stream}: the API's paging does not move forward: id {item_id!r} came back "
            f"after starting_after={self.current_value!r} (request_id={request_id}); stopping "
            "rather than loop or emit it twice."
        )
        raise PagingStuckError(msg)

    def has_more(self, response: t.Any) -> bool:
        body = response_body(response)
        return (body.get("meta") or {}).get("has_more") is True and bool(body.get("data"))

    def get_next(self, response: t.Any) -> str | None:
        token: str = response_body(response)["data"][-1]["id"]
        if token == self.current_value:  # the SDK would raise a bare RuntimeError here
            self._stuck(token, response.headers.get("X-Request-Id"))
        return token


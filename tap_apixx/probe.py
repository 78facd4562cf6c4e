"""Measure how the data API pages, in a few paced requests: the check command's probe, and the
one-line verdict each sync logs at its start."""

from __future__ import annotations

import re
import statistics
import time
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson
import requests

from tap_apixx.connectivity import ConnectionProblem, diagnose
from tap_apixx.http_guard import exchange, mount
from tap_apixx.pagination import MAX_PAGE_SIZE

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from singer_sdk import Tap

    from tap_apixx.client import ApixxStream

PROBE_FIELDS = "updated_at"  # canonical_id and updated_at always come back: the smallest page
QUICK_SAMPLE = 100  # records read by the sync-start probe
MAX_RETRY_AFTER = 60  # a 429 during a probe is waited out once, if it asks for at most this
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
FRACTION = re.compile(r"T\d\d:\d\d:\d\d(?:\.(\d+))?(.*)\Z")
PRECISION_NAMES = {0: "second", 3: "millisecond", 6: "microsecond", 9: "nanosecond"}


class ProbeBudgetError(RuntimeError):
    """The probe tried to send more requests than it is allowed."""


@dataclass
class Reply:
    """One probe request's outcome: a response (any status) or a connection failure."""

    url: str
    status: int | None = None
    body: t.Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    elapsed_ms: float | None = None
    problem: ConnectionProblem | None = None
    failure: str | None = None  # a network failure that is not a ConnectionProblem

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.body, dict)

    @property
    def request_id(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        from_body = error.get("request_id") if isinstance(error, dict) else None
        return from_body or self.headers.get("X-Request-Id")

    @property
    def error_code(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("code", "-")) if isinstance(error, dict) else "-"

    @property
    def error_message(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict):
            return " ".join(str(error.get("message", "")).split())
        kind = self.headers.get("Content-Type", "no content type").split(";")[0]
        return f"not an APIXX JSON body ({kind})"

    @property
    def records(self) -> list[Rec]:
        data = self.body.get("data") if isinstance(self.body, dict) else None
        return [Rec.of(r) for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def describe(self) -> str:
        """One line: the status, code, message and request id, or the connection failure."""
        if self.problem:
            return self.problem.message
        if self.failure:
            return self.failure
        text = f"HTTP {self.status} {self.error_code}: {self.error_message}"
        return text + (f" (request_id={self.request_id})" if self.request_id else "")


@dataclass(frozen=True)
class Rec:
    """The two fields the probe reads from a record."""

    id: str
    ts: str

    @classmethod
    def of(cls, record: dict[str, t.Any]) -> Rec:
        return cls(str(record.get("canonical_id")), str(record.get("updated_at")))

    @property
    def instant(self) -> datetime | None:
        return instant(self.ts)


class Prober:
    """Sends the probe's GET requests through the tap's pacer, at most `budget` of them.

    No retries: a probe reports what it saw. A 429 (another job on the key) is waited out once.
    Its own session, so that the streams' request counts stay their own.
    """

    def __init__(self, tap: Tap, budget: int) -> None:
        self.tap = tap
        self.budget = budget
        self.replies: list[Reply] = []
        self.session = requests.Session()
        mount(self.session)  # the request deadline can cut its connections too

    @property
    def sent(self) -> int:
        return len(self.replies)

    def get(self, stream: ApixxStream, path: str, params: dict[str, t.Any] | None = None) -> Reply:
        reply = self._send(stream, path, params)
        if reply.status == 429:
            wait = _retry_after(reply.headers)
            if wait <= MAX_RETRY_AFTER:
                time.sleep(wait)
                reply = self._send(stream, path, params)
        return reply

    def _send(self, stream: ApixxStream, path: str, params: dict[str, t.Any] | None) -> Reply:
        if self.sent >= self.budget:
            raise ProbeBudgetError(f"the probe may send at most {self.budget} requests")
        url = stream.url_base + path
        prepared = stream.build_prepared_request(
            method="GET", url=url, params=params or {}, headers=stream.http_headers
        )
        reply = Reply(url)
        self.replies.append(reply)
        pacer = stream.pacer
        pacer.acquire()
        try:
            response = exchange(  # to a configured origin only, within deadline and size cap
                self.session.send,
                prepared,
                stream.limits,
                timeout=stream.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            pacer.observe({})
            reply.problem = diagnose(exc, stream.url_base, stream.url_setting)
            reply.failure = stream.redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
            return reply
        except BaseException:
            pacer.observe({})  # no longer in flight (the streams' threads may wait on it)
            raise
        pacer.observe(response.headers)
        stream.first_contact.answered(stream.url_base)
        reply.status, reply.headers = response.status_code, response.headers
        reply.elapsed_ms = response.elapsed.total_seconds() * 1000
        try:
            reply.body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            reply.body = None
        return reply


# Timestamps


def instant(value: str) -> datetime | None:
    """The instant of an RFC 3339 timestamp (Z or an offset; naive taken as UTC), or None."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def timestamp_form(value: str) -> tuple[int, str] | None:
    """(fraction digits, offset spelling) of a timestamp: e.g. (3, 'Z') or (6, '+00:00')."""
    match = FRACTION.search(value)
    if not match or instant(value) is None:
        return None
    return len(match.group(1) or ""), match.group(2) or "(none)"


def format_like(value: datetime, digits: int, offset: str) -> str:
    """`value` spelled as the server spells its timestamps."""
    text = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{value.microsecond:06d}"[:digits].ljust(digits, "0")
    return text + ("Z" if offset in ("Z", "(none)") else offset)


def smallest_step(digits: int) -> timedelta:
    """The smallest unit the timestamps show (1 us at best: datetime's own limit)."""
    return timedelta(microseconds=10 ** max(0, 6 - min(digits, 6)))


def tie_groups(records: list[Rec]) -> list[tuple[int, int]]:
    """(start index, size) of each run of records sharing one instant, in page order."""
    groups: list[tuple[int, int]] = []
    for index, record in enumerate(records):
        if groups and records[groups[-1][0]].instant == record.instant:
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
        else:
            groups.append((index, 1))
    return groups


def first_disorder(records: list[Rec]) -> int | None:
    """Index of the first record earlier than the one before it (None: ascending)."""
    for index in range(1, len(records)):
        a, b = records[index - 1].instant, records[index].instant
        if a and b and b < a:
            return index
    return None


# Findings


@dataclass
class Finding:
    """One measured property: a short value, and the evidence behind it."""

    value: str
    evidence: str


def since_mode(
    prober: Prober, stream: ApixxStream, sample: list[Rec], digits: int, offset: str
) -> Finding:
    """Inclusive (>=) or exclusive (>): ask from the instant of a tie group seen in the sample."""
    start, size = max(tie_groups(sample), key=lambda g: g[1])
    at = sample[start]
    reply = prober.get(
        stream, stream.path, _params(min(MAX_PAGE_SIZE, size + 1), updated_since=at.ts)
    )
    if not reply.ok:
        return Finding("unknown", f"updated_since={at.ts}: {reply.describe()}")
    got = reply.records
    same = [r for r in got if r.instant == at.instant]
    if (
        got
        and got[0].instant is not None
        and at.instant is not None
        and got[0].instant < at.instant
    ):
        return Finding(
            "ignored",
            f"updated_since={at.ts} returned a record at {got[0].ts}, "
            f"before it (request_id={reply.request_id})",
        )
    if same:
        return Finding(
            "inclusive",
            f"updated_since={at.ts} returned the {len(same)} record(s) "
            f"at that instant (request_id={reply.request_id})",
        )
    # Nothing at the instant: exclusive, unless those records changed since the sample. Ask
    # from one step earlier: an exclusive server then returns them.
    moment = at.instant
    if moment is None:
        return Finding("unknown", f"updated_at {at.ts!r} is not a timestamp")
    earlier = format_like(moment - smallest_step(digits), digits, offset)
    again = prober.get(
        stream, stream.path, _params(min(MAX_PAGE_SIZE, size + 1), updated_since=earlier)
    )
    back = [r for r in again.records if r.instant == at.instant]
    if again.ok and back:
        return Finding(
            "exclusive",
            f"updated_since={at.ts} returned none of the {size} record(s) "
            f"at that instant; updated_since={earlier} returned them "
            f"(request_ids {reply.request_id}, {again.request_id})",
        )
    return Finding("unknown", f"the records at {at.ts} changed during the probe; run it again")


def cursor_mode(prober: Prober, stream: ApixxStream, sample: list[Rec]) -> Finding:
    """How `cursor=next_cursor` continues a page that ends inside a tie group."""
    groups = [g for g in tie_groups(sample) if g[1] >= 2]
    start, size = groups[0] if groups else (0, 1)
    first = prober.get(stream, stream.path, _params(start + 1))
    page1 = first.records
    if not first.ok or len(page1) != start + 1 or page1[-1].instant != sample[start].instant:
        why = (
            first.describe() if not first.ok else "the data changed during the probe; run it again"
        )
        return Finding("unknown", why)
    cursor = first.body.get("next_cursor")
    if cursor is None:
        return Finding(
            "none",
            f"a full page of {start + 1} came with next_cursor null although "
            f"more records exist (request_id={first.request_id})",
        )
    form = (
        "the last record's updated_at"
        if instant(str(cursor)) == page1[-1].instant
        else ("a timestamp" if instant(str(cursor)) else "an opaque string")
    )
    second = prober.get(stream, stream.path, {**_params(size + 1), "cursor": cursor})
    if not second.ok:
        return Finding("unknown", f"cursor={cursor}: {second.describe()}")
    return _cursor_finding(page1, second, sample, start, size, form)


def _cursor_finding(
    page1: list[Rec], second: Reply, sample: list[Rec], start: int, size: int, form: str
) -> Finding:
    seen = {r.id for r in page1}
    rest = {r.id for r in sample[start : start + size]} - seen
    got = second.records
    rid = f"request_id={second.request_id}"
    if got and got[0].id in seen:
        return Finding(
            "inclusive",
            f"next_cursor is {form}; cursor repeated the page's last "
            f"record (>=): naive cursor paging duplicates ({rid})",
        )
    if rest and got and got[0].id in rest:
        return Finding(
            "continues",
            f"next_cursor is {form}; cursor continued inside a tie group "
            f"of {size} without loss or repeat ({rid})",
        )
    if rest:
        lost = len(rest - {r.id for r in got})
        return Finding(
            "exclusive",
            f"next_cursor is {form}; cursor skipped {lost} of the "
            f"{size} records sharing the page's last instant (>): naive "
            f"cursor paging loses them ({rid})",
        )
    return Finding(
        "exclusive or continues",
        f"next_cursor is {form}; no tie group in the sample tells these apart ({rid})",
    )


def _params(limit: int, **more: t.Any) -> dict[str, t.Any]:
    return {"limit": limit, "fields": PROBE_FIELDS, **more}


def _retry_after(headers: Mapping[str, str]) -> float:
    value = (headers.get("Retry-After") or "").strip()
    return float(value) if value.isdigit() else float(MAX_RETRY_AFTER + 1)


def precision_name(digits: int) -> str:
    return PRECISION_NAMES.get(digits, f"{digits}-digit fraction")


def latency_summary(replies: list[Reply]) -> tuple[float, float, float] | None:
    """(median, 90th percentile, max) milliseconds to the response headers."""
    values = sorted(r.elapsed_ms for r in replies if r.elapsed_ms is not None)
    if not values:
        return None
    p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
    return statistics.median(values), p90, values[-1]


# The verdict each sync logs at its start


def quick_verdict(tap: Tap, stream: ApixxStream) -> str:
    """Two requests (three when exclusive) to `stream`'s entity: timestamp form, order, and
    updated_since semantics."""
    prober = Prober(tap, budget=3)
    started = time.monotonic()
    reply = prober.get(stream, stream.path, _params(QUICK_SAMPLE))
    if not reply.ok:
        return f"not probed: {reply.describe()}"
    sample = reply.records
    if not sample:
        return f"not probed: '{stream.name}' has no records yet"
    forms = {f for f in (timestamp_form(r.ts) for r in sample) if f}
    digits, offset = max(forms) if forms else (3, "Z")
    mode = since_mode(prober, stream, sample, digits, offset).value
    order = "ascending" if first_disorder(sample) is None else "NOT ascending"
    spelled = " and ".join(f"{precision_name(d)} precision with {o}" for d, o in sorted(forms))
    limit = reply.headers.get("X-RateLimit-Limit")
    remaining = reply.headers.get("X-RateLimit-Remaining")
    rate = f"rate limit {limit} ({remaining} left)" if limit else "no rate-limit headers"
    return (
        f"updated_since {mode}; updated_at {spelled or 'unparseable'}; {order}; {rate} "
        f"({prober.sent} requests to '{stream.name}', {time.monotonic() - started:.2f} s)"
    )


def log_server_semantics(tap: Tap) -> None:
    """Log, once per sync, what the data API's answers say about its paging semantics.

    Two or three small requests to the first selected canonical stream (none selected:
    nothing). A failure is logged and the sync goes on: the streams then report it in their
    own words.
    """
    from tap_apixx.streams import CanonicalStream  # here: streams import what probes them

    stream = next(
        (s for s in tap.streams.values() if isinstance(s, CanonicalStream) and s.selected), None
    )
    if stream is None:
        return
    try:
        verdict = quick_verdict(tap, stream)
    except Exception as exc:  # noqa: BLE001 - a probe must never be what stops a sync
        verdict = f"not probed: {stream.redact(' '.join(str(exc).split()))}"
    tap.logger.info("Server semantics: %s", verdict)

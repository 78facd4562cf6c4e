"""Bookmarks: the API's timestamp format, the start-point rule and the state's extra keys."""

from __future__ import annotations

import re
import sys
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice, repeat
from operator import floordiv, le, methodcaller, mul, sub

SEEN_KEY = "seen_at_bookmark"  # state: ids already emitted at the bookmark's exact instant
NS_PER_SECOND = 10**9
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMESTAMP = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)\Z"
)


@dataclass(frozen=True)
class Stamp:
    """An updated_at as an exact instant (ns since the epoch) and the fraction digits it shows.

    Instants are compared, never strings: `…22.759Z` and `…22.759000+00:00` are one instant.
    """

    ns: int
    digits: int
    text: str = field(compare=False)


def parse_stamp(text: t.Any) -> Stamp | None:
    """The Stamp of an RFC 3339 timestamp with a zone (`Z` or an offset), else None."""
    parsed = instant_ns(text)
    return None if parsed is None else Stamp(parsed[0], parsed[1], text)


def instant_ns(text: t.Any) -> tuple[int, int] | None:
    """(ns since the epoch, fraction digits) of an RFC 3339 timestamp with a zone, else None.

    Called for every record: the calendar work (validating the date, applying the offset) is
    done once per distinct minute and zone, which the records of a sorted page share.
    """
    if isinstance(text, str) and len(text) >= 20 and text[10] in "Tt":
        # the usual forms (0, 3 or 6 digits; `Z` or `±hh:mm`): one C call, no cache
        utc = text[-1] in "Zz"
        end = len(text) - 1 if utc else len(text) - 6
        digits = end - 20 if text[19] == "." else (0 if end == 19 else -1)
        if digits in (0, 3, 6) and (utc or (text[end] in "+-" and text[-3] == ":")):
            try:
                value = datetime.fromisoformat(text[:end] + "+00:00" if utc else text)
            except ValueError:
                return None
            delta = value - EPOCH
            us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
            return us * 1000, digits
    match = TIMESTAMP.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    key = whole[:16] + zone
    minute = _MINUTES.get(key)
    if minute is None:
        try:
            base = datetime.fromisoformat(whole[:16] + ":00" + ("+00:00" if zone in "Zz" else zone))
        except ValueError:
            return None
        minute = (base - EPOCH) // timedelta(seconds=1)
        if len(_MINUTES) >= MAX_CACHED_MINUTES:
            _MINUTES.clear()
        _MINUTES[key] = minute
    second = int(whole[17:])
    if second > 59:  # as datetime.fromisoformat: no leap second
        return None
    ns = (minute + second) * NS_PER_SECOND
    if fraction:
        return ns + int(fraction.ljust(9, "0")), len(fraction)
    return ns, 0


MAX_CACHED_MINUTES = 100_000
_MINUTES: dict[str, int] = {}  # 'YYYY-MM-DDTHH:MM' + zone -> its epoch seconds


# A page's updated_at values, joined one per line, when all are UTC (`Z`) with one shape: no
# fraction, milliseconds or microseconds (keyed by the length of each value)
_UTC_PAGES = {
    20 + width: (
        re.compile(rf"(?:\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d{fraction}Z\n)*\Z", re.ASCII),
        digits,
    )
    for width, fraction, digits in ((0, "", 0), (4, r"\.\d{3}", 3), (7, r"\.\d{6}", 6))
}
_ISO_Z = sys.version_info >= (3, 11)  # datetime.fromisoformat reads `Z` from Python 3.11 on
_ONE_US = timedelta(microseconds=1)
EARLIEST_NS = -(2**63)  # the paginator's "no instant yet" and "no bound": earlier is refused
_UPDATED_AT, _ID = methodcaller("get", "updated_at"), methodcaller("get", "canonical_id")


def page_instants(records: list[t.Any]) -> tuple[list[int], int] | None:
    """(ns of each record's updated_at, fraction digits) for a page in the API's usual form.

    The usual page: dicts, each with a non-empty string canonical_id and an updated_at in UTC
    (`Z`), all with the same number of fraction digits, ascending. Such a page is checked and
    converted in a few C loops over the whole page, where `instant_ns` costs a Python call per
    record. Any other page (an offset, mixed precision, a bad or missing value, a record out
    of order) gives None: the caller then goes record by record, and names what is wrong.
    """
    if not _ISO_Z or not records or set(map(type, records)) != {dict}:
        return None
    ids = list(map(_ID, records))
    if set(map(type, ids)) != {str} or not all(ids):
        return None
    texts = list(map(_UPDATED_AT, records))
    if set(map(type, texts)) != {str}:
        return None
    lengths = set(map(len, texts))
    shape = _UTC_PAGES.get(lengths.pop()) if len(lengths) == 1 else None
    if shape is None:
        return None
    pattern, digits = shape
    joined = "\n".join(texts) + "\n"
    if joined.count("\n") != len(texts) or pattern.match(joined) is None:
        return None
    try:
        moments = list(map(datetime.fromisoformat, texts))
    except ValueError:  # e.g. February 30th
        return None
    micros = map(floordiv, map(sub, moments, repeat(EPOCH)), repeat(_ONE_US))
    stamps = list(map(mul, micros, repeat(1000)))
    if stamps[0] < EARLIEST_NS or not all(map(le, stamps, islice(stamps, 1, None))):
        return None  # before the paginator's lowest instant, or out of order: record by record
    return stamps, digits


def format_stamp(ns: int, digits: int) -> str:
    """RFC 3339 UTC with `digits` fraction digits and `Z`, cut down (never up) to them."""
    seconds, rest = divmod(ns, NS_PER_SECOND)
    text = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{rest:09d}"[:digits]
    return text + "Z"


def stamp_at(ns: int, digits: int) -> Stamp:
    """The Stamp of instant `ns` shown with `digits` fraction digits (cut down to them)."""
    return Stamp(ns, digits, format_stamp(ns, digits))


def stamp_of(value: datetime) -> Stamp:
    """The Stamp of an aware datetime, to the microsecond."""
    return stamp_at((value - EPOCH) // timedelta(microseconds=1) * 1000, 6)


def iso_ms(value: datetime) -> str:
    """Format like the API's updated_at: UTC, millisecond precision, `Z`."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def start_point(start_date: str | None, bookmark: str | None, lookback: timedelta) -> str | None:
    """Where a sync starts: the later of start_date and (bookmark - lookback); None: everything."""
    starts = []
    if start_date:
        starts.append(parse_ts(start_date))
    if bookmark:
        starts.append(parse_ts(bookmark) - lookback)
    return iso_ms(max(starts)) if starts else None


def start_stamp(start_date: str | None, bookmark: str | None, lookback: timedelta) -> Stamp | None:
    """`start_point` as an exact instant: the bookmark keeps its precision (ms or µs), and
    with no lookback it is the bookmark itself, so its tie group is re-read whole."""
    starts = [stamp_of(parse_ts(start_date))] if start_date else []
    if mark := parse_stamp(bookmark) or (stamp_of(parse_ts(bookmark)) if bookmark else None):
        back = lookback // timedelta(microseconds=1) * 1000
        starts.append(stamp_at(mark.ns - back, mark.digits) if back else mark)
    return max(starts, key=lambda s: s.ns) if starts else None

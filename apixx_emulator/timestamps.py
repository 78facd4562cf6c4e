"""Timestamps as the API writes and reads them: two precisions, instants compared exactly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US_PER_SECOND = 1_000_000
FAST_MIN_S, FAST_MAX_S = 0, 253402300800  # 1970 .. 9999: time.strftime pads these years itself
AFTER_EVERY_STAMP = "~"  # sorts after any formatted timestamp (a bound past year 9999)


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC with millisecond precision and a Z, as the API writes `updated_at`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(ms // 1000)) + f"{ms % 1000:03d}Z"


def iso_us(us: int) -> str:
    """RFC 3339 UTC with microsecond precision and a +00:00 offset (the other form the contract allows)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(us // US_PER_SECOND)) + f"{us % US_PER_SECOND:06d}+00:00"


def iso_s(ms: int) -> str:
    """Whole seconds with a Z: the form of the other timestamps (created_at, ops times)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def parse_us(value: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp (Z or an offset, any fraction), or
    ValueError. Exact integer arithmetic: no float rounding of the instant."""
    text = value.strip()
    if len(text) < 20 or text[10] not in "Tt ":
        raise ValueError("not an RFC 3339 date-time")
    dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    if dt.tzinfo is None:
        raise ValueError("timestamp needs a time zone (Z or +hh:mm)")
    return (dt - EPOCH) // timedelta(microseconds=1)


def to_ms(iso: str) -> int:
    """Milliseconds since the epoch (rounded down) of a timestamp in any accepted form."""
    return parse_us(iso) // 1000


@dataclass(frozen=True)
class Precision:
    """How one dataset writes `updated_at`: its unit (in microseconds) and its form. Stamps are kept
    as integers in that unit; within a dataset every stamp has the same width, so their strings
    sort as their instants do."""

    name: str
    unit_us: int

    @property
    def per_ms(self) -> int:
        return 1000 // self.unit_us

    def format(self, units: int) -> str:
        """The `updated_at` string of a stamp given in this precision's units."""
        seconds = units * self.unit_us // US_PER_SECOND
        if FAST_MIN_S <= seconds < FAST_MAX_S:
            return iso_ms(units) if self.unit_us == 1000 else iso_us(units)
        if seconds >= FAST_MAX_S:
            return AFTER_EVERY_STAMP
        dt = EPOCH + timedelta(microseconds=units * self.unit_us)
        if self.unit_us == 1000:
            return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return dt.isoformat(timespec="microseconds")

    def units(self, us: int) -> int:
        """An instant (microseconds) in this precision's units, rounded down."""
        return us // self.unit_us

    def lower_bound(self, us: int, inclusive: bool) -> str:
        """The smallest stamp string that satisfies `updated_at >= us` (inclusive) or `> us`:
        bisecting a dataset's sorted stamps with it compares instants, whatever form `us` came in."""
        units = -(-us // self.unit_us) if inclusive else us // self.unit_us + 1
        try:
            return self.format(units)
        except (OverflowError, ValueError):
            return "" if units < 0 else AFTER_EVERY_STAMP


PRECISIONS = {"ms": Precision("ms", 1000), "us": Precision("us", 1)}
SINCE_MODES = ("inclusive", "exclusive")
CURSOR_MODES = ("exclusive", "inclusive")

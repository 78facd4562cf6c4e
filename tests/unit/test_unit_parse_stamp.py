"""parse_stamp caches the calendar work per minute: it must equal the plain datetime computation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from tap_apixx import bookmarks
from tap_apixx.bookmarks import EPOCH, NS_PER_SECOND, parse_stamp


def reference(text: str):
    """The instant (ns) and fraction digits of an RFC 3339 text, by datetime alone, or None."""
    match = bookmarks.TIMESTAMP.match(text)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    try:
        base = datetime.fromisoformat(whole + ("+00:00" if zone in "Zz" else zone))
    except ValueError:
        return None
    seconds = (base - EPOCH) // timedelta(seconds=1)
    return seconds * NS_PER_SECOND + int((fraction or "0").ljust(9, "0")), len(fraction or "")


texts = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone, sep: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}",
    st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), st.integers(0, 60),
    st.integers(0, 61), st.sampled_from(["", ".1", ".123", ".123456", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "-05:30", "+14:00", "+24:00"]), st.sampled_from(["T", "t", " "]))


@settings(max_examples=2000, deadline=None)
@given(text=texts, again=st.booleans())
def test_parse_stamp_equals_the_datetime_computation(text, again):
    if not again:
        bookmarks._MINUTES.clear()  # cold and warm cache alike
    stamp = parse_stamp(text)
    expected = reference(text)
    assert (None if stamp is None else (stamp.ns, stamp.digits)) == expected
    if stamp is not None:
        assert stamp.text == text


def test_known_instants():
    assert parse_stamp("1970-01-01T00:00:01.5Z").ns == int(1.5 * NS_PER_SECOND)
    stamp = parse_stamp("2026-07-18T10:00:00.123456+02:00")
    utc = datetime(2026, 7, 18, 8, 0, 0, 123456, tzinfo=timezone.utc)
    assert stamp.ns == (utc - EPOCH) // timedelta(microseconds=1) * 1000 and stamp.digits == 6
    assert parse_stamp("2026-02-30T00:00:00Z") is None and parse_stamp("2026-01-01T00:00:60Z") is None

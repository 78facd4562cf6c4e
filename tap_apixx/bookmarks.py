"""Bookmarks: the API's timestamp format, the start-point rule and the state's extra keys."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

SEEN_KEY = "seen_at_bookmark"  # state: ids already emitted at the bookmark's exact instant


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

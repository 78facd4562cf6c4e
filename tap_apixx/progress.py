"""SyncProgress: a stream's records, rate and share of its time window, logged every few seconds."""

from __future__ import annotations

import time
import typing as t

from tap_apixx.bookmarks import parse_ts

if t.TYPE_CHECKING:
    import logging

PROGRESS_EVERY_SECONDS = 5.0


class CountingStream(t.Protocol):
    """What SyncProgress reads from a stream."""

    name: str
    counts: dict[str, int]

    @property
    def logger(self) -> logging.Logger: ...


class SyncProgress:
    """Logs records, rate and % of the time window at most every few seconds, then a summary."""

    def __init__(self, stream: CountingStream, since: str | None, until: str | None = None) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last_log = self.started
        self.window_start = parse_ts(since).timestamp() if since else None
        self.window_end = min(parse_ts(until).timestamp(), time.time()) if until else time.time()

    def tick(self, current_ts: str | None, first_ts: str | None = None) -> None:
        """`first_ts`: the page's earliest record; without a start point the window opens there."""
        if self.window_start is None and first_ts:
            self.window_start = parse_ts(first_ts).timestamp()
        now = time.monotonic()
        if now - self.last_log < PROGRESS_EVERY_SECONDS:
            return
        self.last_log = now
        records = self.stream.counts["records"]
        rate = records / max(now - self.started, 1e-9)
        self.stream.logger.info(
            "Progress '%s': %d records, %.0f records/s, %s of the time window",
            self.stream.name,
            records,
            rate,
            self._percent(current_ts),
        )

    def _percent(self, current_ts: str | None) -> str:
        if current_ts is None:
            return "?"
        current = parse_ts(current_ts).timestamp()
        start = self.window_start if self.window_start is not None else current
        span = max(self.window_end - start, 1e-9)
        return f"{min(100.0, 100.0 * (current - start) / span):.1f}%"

    def summary(self, paging: str | None = None) -> None:
        """`paging`: what paging cost beyond one request per page (the paginator's costs)."""
        counts = self.stream.counts
        self.stream.logger.info(
            "Finished '%s': %d records, %d requests, %d retries, %d rate-limited (429), %.1f s%s",
            self.stream.name,
            counts["records"],
            counts["requests"],
            counts["retries"],
            counts["throttled"],
            time.monotonic() - self.started,
            f"; {paging}" if paging else "",
        )

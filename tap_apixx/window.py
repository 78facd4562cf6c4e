"""Bounded windows: `start_date`/`end_date`, and the window marker a windowed run leaves in state.

A run with `end_date` syncs only records with updated_at (runs: started_at) before it, and its
bookmark never moves past it. Each stream's state then carries
`"window": {"start": <start_date or null>, "end": <end_date>, "complete": <bool>}`, so a
windowed state is never mistaken for a normal incremental one:

- a windowed run continues a state of the same (or an earlier-starting) window, e.g. after it
  was killed or with a later end_date; it refuses a normal incremental state (that belongs to
  another job: give the window its own state id);
- a normal run (no end_date) continues a windowed state when that window started at or before
  the run's start_date, since everything from start_date to the bookmark was read: it reads on
  from the bookmark and the marker becomes null (a normal state again). If the window started
  later, continuing would leave [start_date, window start) unsynced, so the run refuses.
"""

from __future__ import annotations

import bisect
import typing as t
from dataclasses import dataclass
from datetime import datetime, timezone

from tap_apixx.errors import TapApixxError

if t.TYPE_CHECKING:
    from collections.abc import Mapping

WINDOW_KEY = "window"  # stream state: the window a windowed run covers (null: a normal state)


class WindowStateError(TapApixxError):
    """The state of a stream cannot be continued by this run's window without a gap or a mix-up."""


def parse_instant(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (naive values are UTC)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def api_form(value: str) -> str:
    """A timestamp in the API's updated_at form: UTC, milliseconds, `Z`."""
    moment = parse_instant(value).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Window:
    """The time range a run syncs: [start, end), either side open when None."""

    start: str | None = None
    end: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> Window:
        start, end = config.get("start_date"), config.get("end_date")
        return cls(api_form(start) if start else None, api_form(end) if end else None)

    @property
    def bounded(self) -> bool:
        """True for a windowed run (end_date set)."""
        return self.end is not None

    def __str__(self) -> str:
        return f"[{self.start or 'the beginning'}, {self.end or 'now'})"

    def cut(self, records: list[dict[str, t.Any]], key: str) -> int:
        """How many of `records` (ascending on `key`) fall before the end: all when unbounded."""
        if self.end is None or not records:
            return len(records)
        end = parse_instant(self.end)
        if parse_instant(records[-1][key]) < end:
            return len(records)  # the usual case: the whole page is inside
        return bisect.bisect_left([parse_instant(r[key]) for r in records], end)

    def marker(self, coverage_start: str | None, *, complete: bool) -> dict[str, t.Any]:
        return {"start": coverage_start, "end": self.end, "complete": complete}


def covers(state_start: str | None, run_start: str | None) -> bool:
    """Whether a state read from `state_start` on has everything a run from `run_start` needs."""
    if state_start is None:
        return True
    return run_start is not None and parse_instant(state_start) <= parse_instant(run_start)


def prepare_stream_state(stream: str, state: dict[str, t.Any], window: Window) -> str | None:
    """Check that this run may continue `state` (one stream's), and set its window marker.

    Returns a line to log when the state changes meaning (a window taken over by a normal
    run), else None. Raises WindowStateError when continuing would leave a gap or overwrite
    another job's state.
    """
    bookmark = state.get("replication_key_value")
    marker = state.get(WINDOW_KEY)
    if not bookmark:  # nothing read yet (or rewound to the start): any window may begin here
        if window.bounded:
            state[WINDOW_KEY] = window.marker(window.start, complete=False)
        elif marker is not None:
            state[WINDOW_KEY] = None
        return None
    if not isinstance(marker, dict):  # a normal incremental state
        if window.bounded:
            raise WindowStateError(_normal_state_in_window(stream, bookmark, window))
        return None
    if not covers(marker.get("start"), window.start):
        raise WindowStateError(_gap(stream, marker, window))
    if window.bounded:
        state[WINDOW_KEY] = window.marker(marker.get("start"), complete=False)
        return None
    state[WINDOW_KEY] = None
    return (
        f"Stream '{stream}': continuing from the bookmark {bookmark} of the window "
        f"[{marker.get('start') or 'the beginning'}, {marker.get('end')}); the state is a "
        "normal incremental state from now on."
    )


def mark_complete(state: dict[str, t.Any]) -> None:
    """The stream read its whole window: say so in its marker (normal states have none)."""
    marker = state.get(WINDOW_KEY)
    if isinstance(marker, dict):
        state[WINDOW_KEY] = {**marker, "complete": True}


def _normal_state_in_window(stream: str, bookmark: str, window: Window) -> str:
    return (
        f"{stream}: the state holds a normal incremental bookmark ({bookmark}); a windowed run "
        f"(end_date {window.end}) must neither continue nor overwrite it. Give the window its "
        "own state id (meltano run --state-id-suffix <window>), or unset end_date."
    )


def _gap(stream: str, marker: Mapping[str, t.Any], window: Window) -> str:
    return (
        f"{stream}: the state is that of the window [{marker.get('start')}, {marker.get('end')}); "
        f"continuing it from start_date {window.start or '(none: the beginning)'} would leave "
        f"[{window.start or 'the beginning'}, {marker.get('start')}) unsynced. Run that window "
        "under its own state id first, or rewind the stream (setting rewind, to: start)."
    )

"""Tap mixin: before any stream syncs, apply `rewind`, check windows against state, restore new fields.

Everything here happens on the input state, before the first STATE message, so a refused run
writes nothing and a rewind is recorded in the very first STATE the target receives.
"""

from __future__ import annotations

import typing as t

from singer_sdk import Tap

from tap_apixx.new_fields import DEFAULT_NEW_FIELDS, NEW_FIELDS_POLICIES
from tap_apixx.ops_streams import OPS_STREAMS
from tap_apixx.rewind import apply_rewinds, parse_rewinds, rewind_problems
from tap_apixx.streams import CANONICAL_ENTITIES
from tap_apixx.window import Window, parse_instant, prepare_stream_state

if t.TYPE_CHECKING:
    from singer_sdk import Stream


def _class_replication_key(cls: type) -> str | None:
    key = getattr(cls, "replication_key", None)
    return key if isinstance(key, str) else None  # full-table streams: the SDK's property


REPLICATION_KEYS: dict[str, str | None] = {
    **dict.fromkeys(CANONICAL_ENTITIES, "updated_at"),
    **{name: _class_replication_key(cls) for name, cls in OPS_STREAMS.items()},
}


def lifecycle_problems(config: t.Mapping[str, t.Any]) -> list[str]:
    """`<setting>: <why>` lines for end_date, rewind and new_fields."""
    problems = []
    start, end = config.get("start_date"), config.get("end_date")
    if end is not None:
        try:
            end_at = parse_instant(str(end))
        except ValueError:
            problems.append(f"end_date: {end!r} is not an RFC 3339 timestamp")
        else:
            try:
                if start is not None and parse_instant(str(start)) >= end_at:
                    problems.append(f"end_date: {end!r} is not after start_date {start!r}")
            except ValueError:
                pass  # start_date's own check reports it
    policy = config.get("new_fields")
    if policy is not None and policy not in NEW_FIELDS_POLICIES:
        problems.append(f"new_fields: {policy!r} is not one of {', '.join(NEW_FIELDS_POLICIES)}")
    return problems + rewind_problems(config.get("rewind"), REPLICATION_KEYS)


class Lifecycle(Tap):
    """Tap mixin: prepares the input state before the sync starts (see the module docstring).

    `prepare_state` is called by ParallelSync.sync_all, first thing, whatever the parallelism.
    """

    def extra_config_problems(self) -> list[str]:
        return lifecycle_problems(self.config)

    @property
    def new_fields_policy(self) -> str:
        return str(self.config.get("new_fields") or DEFAULT_NEW_FIELDS)

    def prepare_state(self) -> None:
        """Rewinds, then the window check of every selected incremental stream's state."""
        window = Window.from_config(self.config)
        chosen = [s for s in self.streams.values() if s.selected and s.replication_key]
        bookmarks = self.state.setdefault("bookmarks", {})
        rewinds = parse_rewinds(self.config.get("rewind"))
        apply_rewinds(bookmarks, rewinds, {s.name for s in chosen}, self.logger)
        for stream in chosen:
            if note := prepare_stream_state(stream.name, stream.stream_state, window):
                self.logger.warning("%s", note)
            restore_new_fields(stream, self.new_fields_policy)
        if window.bounded:
            self.logger.info(
                "Windowed run: records with %s in %s only", "updated_at/started_at", window
            )


def restore_new_fields(stream: Stream, policy: str) -> None:
    """With new_fields `load`, fields added by earlier runs are in the schema from the start."""
    restore = getattr(stream, "restore_new_fields", None)
    if policy == "load" and restore is not None:
        restore()

"""The `rewind` setting: move chosen streams' bookmarks back, once, and leave every other alone.

`rewind` is a list of `{"stream": <name>, "to": <RFC 3339> | "start",
"id": <token>}`. At the start of a run, each rewind whose id the stream's state does not yet
list in `rewinds_applied` is applied to that stream: `"start"` clears its bookmark (the stream
syncs again from start_date, or from the beginning); a timestamp moves the bookmark back to it
(never forward: a bookmark already at or before it stays). The id is then recorded in the
stream's state, so a setting left in place does nothing on the next runs; a new re-sync takes
a new id.

Cleared values are written as null, not removed: Meltano merges the state of an interrupted
run over the last complete one, and a removed key would come back from it.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from tap_apixx.window import api_form, parse_instant

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Collection, Mapping

APPLIED_KEY = "rewinds_applied"  # stream state: ids of the rewinds already applied to it
MAX_APPLIED_IDS = 50  # ids kept per stream; older ones are long past being re-applied
TO_START = "start"


@dataclass(frozen=True)
class Rewind:
    """Rewind `stream` to `to` (None: to the start) once, under the token `id`."""

    stream: str
    to: str | None
    id: str


def rewind_problems(value: t.Any, streams: Mapping[str, str | None]) -> list[str]:
    """`rewind: <why>` lines for a bad setting; `streams` maps names to replication keys."""
    try:
        rewinds = parse_rewinds(value)
    except (TypeError, ValueError) as exc:
        return [f"rewind: {exc}"]
    problems = []
    for rewind in rewinds:
        if rewind.stream not in streams:
            problems.append(
                f"rewind: unknown stream {rewind.stream!r} (one of {', '.join(streams)})"
            )
        elif streams[rewind.stream] is None:
            problems.append(
                f"rewind: stream {rewind.stream!r} is read in full on every run; "
                "there is no bookmark to rewind"
            )
    return problems


def parse_rewinds(value: t.Any) -> list[Rewind]:
    """The setting as Rewind objects; TypeError or ValueError names what is wrong."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(
            f"expected a list of {{stream, to, id}} objects, got {type(value).__name__}"
        )
    return [_parse_one(item, index) for index, item in enumerate(value, start=1)]


def _parse_one(item: t.Any, index: int) -> Rewind:
    where = f"item {index}"
    if not isinstance(item, dict):
        raise TypeError(f"{where} is not an object with stream, to and id")
    unknown = set(item) - {"stream", "to", "id"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)} (allowed: stream, to, id)")
    stream, to, token = item.get("stream"), item.get("to"), item.get("id")
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"{where} needs 'stream', a stream name")
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"{where} needs 'id', a token naming this re-sync (e.g. a ticket number)")
    if to == TO_START:
        return Rewind(stream, None, token.strip())
    try:
        return Rewind(stream, api_form(str(to)), token.strip())
    except ValueError:
        raise ValueError(
            f"{where}: 'to' must be \"start\" or an RFC 3339 timestamp, got {to!r}"
        ) from None


def apply_rewinds(
    bookmarks: dict[str, dict[str, t.Any]],
    rewinds: list[Rewind],
    selected: Collection[str],
    logger: logging.Logger,
) -> None:
    """Apply the rewinds not applied yet to the selected streams' states (in place)."""
    for rewind in rewinds:
        if rewind.stream not in selected:
            logger.warning(
                "Rewind '%s' of stream '%s' waits: the stream is not selected in this run.",
                rewind.id,
                rewind.stream,
            )
            continue
        state = bookmarks.setdefault(rewind.stream, {})
        applied = list(state.get(APPLIED_KEY) or [])
        if rewind.id in applied:
            logger.info(
                "Rewind '%s' of stream '%s' was applied before; nothing to do.",
                rewind.id,
                rewind.stream,
            )
            continue
        logger.warning("%s", _apply(state, rewind))
        state[APPLIED_KEY] = [*applied, rewind.id][-MAX_APPLIED_IDS:]


def _apply(state: dict[str, t.Any], rewind: Rewind) -> str:
    bookmark = state.get("replication_key_value")
    head = f"Rewind '{rewind.id}': stream '{rewind.stream}'"
    if rewind.to is None:
        state["replication_key_value"] = None
        state["seen_at_bookmark"] = None
        return f"{head} goes back to the start (bookmark was {bookmark}); other streams untouched."
    if not bookmark or parse_instant(bookmark) <= parse_instant(rewind.to):
        return (
            f"{head}: its bookmark ({bookmark or 'none'}) is not after {rewind.to}; "
            "nothing to rewind (a rewind never moves a bookmark forward)."
        )
    state["replication_key_value"] = rewind.to
    state["seen_at_bookmark"] = None
    return f"{head} goes back from {bookmark} to {rewind.to}; other streams untouched."

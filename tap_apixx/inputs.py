"""The tap's input files (config, state, catalog): read and checked, one clear line per problem.

Whatever a file holds, the tap either goes on (with a warning where nothing can be lost: an
unknown stream, a catalog override it cannot honour, a malformed list of already-emitted ids)
or stops before its first request with one line that names the file and, where there is one,
the stream. Values are never echoed where they could be the key.
"""

from __future__ import annotations

import copy
import difflib
import json
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePath

from singer_sdk import Tap
from singer_sdk.singerlib import Catalog

from tap_apixx.errors import InputError

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)  # no APIXX record is older than the epoch
MAX_CLOCK_SKEW = timedelta(minutes=15)  # a bookmark later than now + this was not written by us
SEEN_KEY = "seen_at_bookmark"
FLAGS = ("selected", "selected-by-default")


@dataclass(frozen=True)
class StreamKeys:
    """What the tap replicates a stream on, whatever a catalog asks for."""

    replication_key: str | None
    key_properties: tuple[str, ...]

    @property
    def replication_method(self) -> str:
        return "INCREMENTAL" if self.replication_key else "FULL_TABLE"


def did_you_mean(name: str, choices: t.Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a near miss of one of `choices`, else ``."""
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.8)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def kind_of(value: t.Any) -> str:
    """The JSON name of a value's type, for messages that must not show the value itself."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    if isinstance(value, bool) or value is None:
        return names[type(value)]
    if isinstance(value, (int, float)):
        return "number"
    return names.get(type(value), type(value).__name__)


# Files


def read_json(path: str | PurePath, what: str) -> t.Any:
    """The JSON value in the file at `path`; `what` (config, state, catalog) names it in errors."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what}: no file at {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what}: {path} is a directory, not a file") from None
    except OSError as exc:
        raise InputError(
            f"{what}: cannot read {path} ({exc.strerror or type(exc).__name__})"
        ) from None
    return parse_json(raw, what, str(path))


def parse_json(raw: bytes, what: str, where: str) -> t.Any:
    """Parse `raw` as JSON text; never echoes the content (it may hold the key)."""
    if not raw.strip():
        raise InputError(f"{what}: {where} is empty; it must hold a JSON object")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark from a Windows editor is fine
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what}: {where} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        msg = f"{what}: {where} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        raise InputError(msg) from None
    except RecursionError:
        raise InputError(f"{what}: {where} is nested too deeply to be a {what} file") from None
    except ValueError as exc:
        raise InputError(f"{what}: {where} is not valid JSON ({exc})") from None


def _no_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def json_object(value: t.Any, what: str, where: str) -> dict[str, t.Any]:
    if not isinstance(value, dict):
        raise InputError(f"{what}: {where} holds a JSON {kind_of(value)}, not an object")
    return value


# Instants (start_date, bookmarks)


def instant(value: t.Any) -> datetime | None:
    """An RFC 3339 / ISO 8601 string as an aware UTC datetime (naive is UTC); None if it is not."""
    if not isinstance(value, str) or not value or value != value.strip():
        return None
    text = value[:-1] + "+00:00" if value[-1:] in "Zz" else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(
        timezone.utc
    )


def instant_problem(value: t.Any, now: datetime, skew: timedelta = MAX_CLOCK_SKEW) -> str | None:
    """Why `value` is not a usable instant for this tap, or None."""
    when = instant(value)
    if when is None:
        return "is not an RFC 3339 timestamp"
    if when < EARLIEST:
        return "is before 1970-01-01"
    if when > now + skew:
        return f"is in the future (now is {now:%Y-%m-%dT%H:%M:%SZ})"
    return None


# State


def check_state(
    state: t.Any, streams: t.Mapping[str, StreamKeys], now: datetime | None = None
) -> list[str]:
    """Raise InputError for a state the tap cannot resume from; return warnings.

    A malformed list of ids already emitted at the bookmark is dropped with a warning (its
    only use is to skip duplicates), so `state` may be changed in place.
    """
    now = now or datetime.now(timezone.utc)
    json_object(state, "state", "the file")
    bookmarks = state.get("bookmarks")
    if bookmarks is None:
        return []
    if not isinstance(bookmarks, dict):
        raise InputError(f"state: 'bookmarks' is a JSON {kind_of(bookmarks)}, not an object")
    warnings = []
    for name, bookmark in bookmarks.items():
        if name not in streams:
            warnings.append(
                f"state: ignoring the bookmark of unknown stream '{name}'"
                f"{did_you_mean(name, streams)}"
            )
            continue
        if not isinstance(bookmark, dict):
            raise InputError(
                f"state: the bookmark of '{name}' is a JSON {kind_of(bookmark)}, "
                "not an object; fix or remove it"
            )
        warnings += _check_bookmark(name, bookmark, streams[name], now)
    return warnings


def _check_bookmark(name: str, bookmark: dict, keys: StreamKeys, now: datetime) -> list[str]:
    if keys.replication_key is None:
        return []  # a full-table stream reads nothing from its bookmark
    key = bookmark.get("replication_key")
    if key is not None and key != keys.replication_key:
        shown = repr(key) if isinstance(key, str) else f"a JSON {kind_of(key)}"
        raise InputError(
            f"state: the bookmark of '{name}' is for replication key {shown}, not "
            f"'{keys.replication_key}'; remove it to re-sync '{name}' from start_date"
        )
    value = bookmark.get("replication_key_value")
    if value is not None and (why := instant_problem(value, now)):
        shown = (
            repr(value)
            if isinstance(value, str) and len(value) < 40
            else f"a JSON {kind_of(value)}"
        )
        hint = (
            f"'{name}' would sync nothing until then"
            if "future" in why
            else "the tap cannot resume from it"
        )
        raise InputError(
            f"state: the bookmark of '{name}' ({shown}) {why}: {hint}. Fix or "
            f"remove it (without it '{name}' re-syncs from start_date)."
        )
    seen = bookmark.get(SEEN_KEY)
    if seen is not None and not _valid_seen(seen):
        del bookmark[SEEN_KEY]
        warning = (
            f"state: the '{SEEN_KEY}' of '{name}' is malformed; ignoring it (records at the "
            "bookmark's instant may be emitted once more)"
        )
        return [warning]
    return []


def _valid_seen(seen: t.Any) -> bool:
    if not isinstance(seen, dict):
        return False
    ids, ts = seen.get("ids"), seen.get("updated_at")
    ids_ok = ids is None or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))
    return ids_ok and (ts is None or instant(ts) is not None)


# Catalog


def check_catalog(catalog: t.Any, streams: t.Mapping[str, StreamKeys]) -> list[str]:
    """Raise InputError for a catalog the tap cannot apply; return warnings.

    Entries of unknown streams are removed, and replication settings the tap cannot honour
    are reset to the tap's own, each with a warning; so `catalog` may be changed in place.
    """
    json_object(catalog, "catalog", "the file")
    entries = catalog.get("streams")
    if not isinstance(entries, list):
        raise InputError("catalog: 'streams' is missing or not a list")
    warnings: list[str] = []
    names: set[str] = set()
    for index, entry in enumerate(list(entries)):
        if not isinstance(entry, dict):
            raise InputError(f"catalog: streams[{index}] is a JSON {kind_of(entry)}, not an object")
        name = entry.get("tap_stream_id", entry.get("stream"))
        if not isinstance(name, str) or not name:
            raise InputError(f"catalog: streams[{index}] has no tap_stream_id")
        if name in names:
            raise InputError(f"catalog: stream '{name}' appears twice")
        names.add(name)
        if name not in streams:
            warnings.append(
                f"catalog: ignoring stream '{name}', unknown to tap-apixx"
                f"{did_you_mean(name, streams)}"
            )
            entries.remove(entry)
            continue
        _check_entry(name, entry)
        warnings += _reset_overrides(name, entry, streams[name])
    return warnings


def _check_entry(name: str, entry: dict) -> None:
    schema = entry.get("schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("properties", {}), dict):
        raise InputError(
            f"catalog: the schema of '{name}' is not a JSON Schema object with 'properties'"
        )
    metadata = entry.get("metadata", [])
    if not isinstance(metadata, list):
        raise InputError(
            f"catalog: the metadata of '{name}' is a JSON {kind_of(metadata)}, not a list"
        )
    for item in metadata:
        crumb = item.get("breadcrumb") if isinstance(item, dict) else None
        if not (isinstance(crumb, list) and all(isinstance(c, str) for c in crumb)):
            raise InputError(f"catalog: a metadata entry of '{name}' has no breadcrumb list")
        values = item.get("metadata", {})
        if not isinstance(values, dict):
            raise InputError(f"catalog: the metadata of '{name}' at {crumb} is not an object")
        for flag in FLAGS:
            if flag in values and not isinstance(values[flag], bool):
                raise InputError(
                    f"catalog: '{flag}' of '{name}' at {crumb or 'the stream'} is a "
                    f"JSON {kind_of(values[flag])}, not true or false"
                )


def _reset_overrides(name: str, entry: dict, keys: StreamKeys) -> list[str]:
    """Put back the replication settings the tap uses; warn about each one that differed."""
    ours = {
        "replication_key": keys.replication_key,
        "key_properties": list(keys.key_properties),
        "replication_method": keys.replication_method,
    }
    in_metadata = {
        "replication_key": "replication-key",
        "key_properties": "table-key-properties",
        "replication_method": "forced-replication-method",
    }
    root: dict[str, t.Any] = next(
        (m.get("metadata", {}) for m in entry.get("metadata", []) if m["breadcrumb"] == []), {}
    )
    warnings = []
    for field, value in ours.items():
        for holder, slot in ((entry, field), (root, in_metadata[field])):
            if slot in holder and holder[slot] not in (value, None):
                warnings.append(
                    f"catalog: '{name}' asks for {slot} {holder[slot]!r}; tap-apixx "
                    f"replicates it with {value!r} and ignores that"
                )
                holder[slot] = value
    return warnings


class CheckedInputs(Tap):
    """Tap mixin: the state and catalog are checked (above) before the SDK reads them.

    `stream_keys` names every stream the tap has, with what it replicates on.
    """

    stream_keys: t.ClassVar[t.Mapping[str, StreamKeys]] = {}

    def __init__(self, *, catalog: t.Any = None, state: t.Any = None, **kwargs: t.Any) -> None:
        warnings: list[str] = []
        if isinstance(catalog, (str, PurePath)):
            catalog = read_json(catalog, "catalog")
        if isinstance(state, (str, PurePath)):
            state = read_json(state, "state")
        if catalog is not None and not isinstance(catalog, Catalog):
            catalog = copy.deepcopy(catalog)
            warnings += check_catalog(catalog, self.stream_keys)
        if state is not None:
            state = copy.deepcopy(state)
            warnings += check_state(state, self.stream_keys)
        super().__init__(catalog=catalog, state=state, **kwargs)
        for warning in warnings:
            self.logger.warning("%s", warning)

"""SDK seam: how Singer messages are written (one lock, orjson, a page of records per write).

Replaces the SDK's message writer and state writer, and its per-record `_write_record_message`,
`_write_state_message` and `_increment_stream_state`. tests/unit/test_unit_sdk_seams.py pins the
SDK behaviour each relies on.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import typing as t
from datetime import datetime, timezone
from functools import cached_property

import orjson
from singer_sdk import Stream, Tap
from singer_sdk.helpers._state import StateWriter  # no public way to supply a state writer
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib.encoding.simple import SimpleSingerWriter
from singer_sdk.singerlib.json import serialize_json

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib.encoding.simple import Message


class SyncAbortedError(RuntimeError):
    """Raised in a stream thread that tries to write after the sync was stopped."""


def encode(value: t.Any) -> bytes:
    """JSON bytes of a message dict, like the SDK's encoder but fast."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. Decimal, int beyond 64 bits
        return serialize_json(value).encode()


def record_lines(records: list[dict], prefix: bytes, suffix: bytes) -> bytes:
    """The RECORD lines of a page: each record's JSON between `prefix` and `suffix`.

    One orjson call per record through `map`, joined once: no Python step per record. A page
    holding a value orjson cannot encode is encoded record by record, as `encode` does.
    """
    try:
        body = (suffix + prefix).join(map(orjson.dumps, records))
    except TypeError:
        body = (suffix + prefix).join(map(encode, records))
    return prefix + body + suffix


class SerialSingerWriter(SimpleSingerWriter):
    """The tap's one choke point for stdout: every line is written whole, under one lock.

    Messages are encoded with orjson (several times faster than the SDK's simplejson); a value
    orjson cannot encode (a Decimal, a huge int) falls back to the SDK's encoder. `lock` is
    re-entrant so that a stream can write its page of records, move its bookmark and write
    the STATE message as one step that no other stream's STATE can observe half done.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.aborted: str | None = None

    def serialize_message(self, message: Message) -> str:
        return encode(message.to_dict()).decode()

    def write_message(self, message: Message) -> None:
        self.write_lines(encode(message.to_dict()) + b"\n")

    def write_lines(self, data: bytes) -> None:
        """Write complete lines (each ending in a newline) and flush them."""
        with self.lock:
            if self.aborted:
                raise SyncAbortedError(self.aborted)
            out = sys.stdout  # looked up each time: tests redirect it
            buffer = getattr(out, "buffer", None)
            if buffer is not None:
                out.flush()  # anything written through the text layer goes first
                buffer.write(data)
                buffer.flush()
            else:
                out.write(data.decode())
                out.flush()

    def abort(self, reason: str) -> None:
        """Refuse every later write: the threads still running stop at their next line."""
        with self.lock:
            self.aborted = reason


class SerialStateWriter(StateWriter):
    """StateWriter that snapshots the tap state under the output lock, as one orjson call.

    The SDK's writer compares and deep-copies the state dict in Python, which another stream's
    thread may be changing; an orjson encoding runs without releasing the GIL, so the bytes are
    a consistent snapshot, and comparing bytes replaces the deep copy.
    """

    def __init__(self, message_writer: SerialSingerWriter) -> None:
        super().__init__(message_writer)
        self._writer = message_writer
        self._last_line: bytes | None = None

    def write_state(self, state: t.Any) -> None:
        with self._writer.lock:
            line = encode({"type": "STATE", "value": state}) + b"\n"
            if line != self._last_line:
                self._writer.write_lines(line)
                self._last_line = line


class SerialOutput(Tap):
    """Tap mixin: all output through one SerialSingerWriter, STATE through SerialStateWriter."""

    message_writer_class = SerialSingerWriter

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.message_writer, SerialSingerWriter):
            self._state_writer = SerialStateWriter(self.message_writer)

    def output_lock(self) -> t.ContextManager:
        """The lock under which a stream writes records and STATE as one step."""
        writer = self.message_writer
        return writer.lock if isinstance(writer, SerialSingerWriter) else contextlib.nullcontext()


class OwnBookmark(Stream):
    """Stream mixin: the stream moves its bookmark itself (`advance_bookmark`), not the SDK."""

    def _increment_stream_state(
        self, latest_record: dict, *, context: Context | None = None
    ) -> None:
        self.advance_bookmark(latest_record, self.get_context_state(context))

    def advance_bookmark(self, record: dict, state: dict) -> None:
        """Called for every record written, with the state to update."""
        raise NotImplementedError


class PageOutput(OwnBookmark):
    """Stream mixin: a page of RECORD lines is written in one go, with the STATE that follows it.

    The records skip the SDK's per-record message objects when no stream map or flattening
    changes them: the SDK would only copy each record, drop deselected fields (the API was not
    asked for them, and SchemaDrift drops them if sent) and re-encode it with simplejson.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[dict] = []  # this page's records, written with its STATE
        self._framing = (b"", b"")

    @cached_property
    def _fast_writer(self) -> SerialSingerWriter | None:
        writer, maps = self._tap.message_writer, self.stream_maps
        plain = len(maps) == 1 and type(maps[0]) is SameRecordTransform
        if plain and not maps[0].flattening_enabled and maps[0].stream_alias == self.name:
            return writer if isinstance(writer, SerialSingerWriter) else None
        return None

    def _output_lock(self) -> t.ContextManager:
        tap = self._tap
        return tap.output_lock() if isinstance(tap, SerialOutput) else contextlib.nullcontext()

    def advance_bookmark(self, record: dict, state: dict) -> None:
        """Nothing per record: `commit_page` moves the bookmark once the page is written."""

    def _increment_stream_state(
        self, latest_record: dict, *, context: Context | None = None
    ) -> None:
        """Nothing per record (not even the state lookup): `commit_page` moves the bookmark."""

    def _process_record(
        self,
        record: dict,
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        """Skip the SDK's per-record step when it would do nothing.

        It copies partition keys into the record and syncs child streams for it (a child
        context, a `copy.copy` and a `_sync_children` call per record). A stream without
        child streams or partition keys gets nothing from it.
        """
        if self.child_streams or partition_context:
            super()._process_record(record, child_context, partition_context)

    def commit_page(self, bookmark: dict[str, t.Any]) -> None:
        """Write the page's records, then move the bookmark and write STATE, as one step.

        Under the output lock, so that a STATE line of another stream (which carries every
        bookmark) never shows this bookmark ahead of the records written, nor half updated.
        """
        with self._output_lock():
            self._flush_records()
            self.stream_state.update(bookmark)
            self.state_manager.is_flushed = False
            self._write_state_message()

    def _write_record_message(self, record: dict) -> None:
        if self._fast_writer is None:
            super()._write_record_message(record)
            return
        if not self._pending:  # a page's records share one prefix and time_extracted
            self._framing = self._record_framing()
            self.state_manager.is_flushed = False  # until the page and its STATE are written
        self._pending.append(record)  # encoded with the whole page, in `_flush_records`

    def _record_framing(self) -> tuple[bytes, bytes]:
        """The bytes around a record in its RECORD line, keys in the SDK's order."""
        prefix = b'{"type":"RECORD","stream":' + orjson.dumps(self.name) + b',"record":'
        suffix = b""
        if self._stream_version is not None:
            suffix += b',"version":' + orjson.dumps(self._stream_version)
        suffix += b',"time_extracted":' + orjson.dumps(datetime.now(timezone.utc)) + b"}\n"
        return prefix, suffix

    def _flush_records(self) -> None:
        if self._pending and self._fast_writer is not None:
            data = record_lines(self._pending, *self._framing)
            self._pending.clear()  # before the write: a failed write never writes them twice
            self._fast_writer.write_lines(data)

    def _write_state_message(self) -> None:
        with self._output_lock():
            self._flush_records()  # never a STATE ahead of this stream's records
            super()._write_state_message()

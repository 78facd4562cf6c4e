"""Serialised Singer output (one lock, orjson) and syncing several streams at once."""

from __future__ import annotations

import sys
import threading
import typing as t
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

import orjson
from singer_sdk.helpers._state import StateWriter
from singer_sdk.singerlib.encoding.simple import SimpleSingerWriter
from singer_sdk.singerlib.json import serialize_json

from tap_apixx.pacing import RatePacer, _int

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from singer_sdk import Stream, Tap
    from singer_sdk.singerlib.encoding.simple import Message

DEFAULT_MAX_PARALLEL_STREAMS = 4  # 4 x ~200 ms requests saturate 600/min; more only adds memory
MAX_PARALLEL_STREAMS = 18  # 15 canonical + 3 ops streams: one thread each at most
IN_FLIGHT_EXPIRY = 60.0  # seconds after which a request neither answered nor failed is forgotten


class SyncAbortedError(RuntimeError):
    """Raised in a stream thread that tries to write after the sync was stopped."""


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


class ConcurrentRatePacer(RatePacer):
    """RatePacer for several threads sending at once under the key's one budget.

    An answer's X-RateLimit-Remaining does not count the requests still in flight, and an
    answer may arrive after that of a request sent later. So: only the answer to the latest
    request sent updates the budget, every request still in flight is taken off it (some may
    already be counted: that only costs a slot or two), and when the budget is unknown or used
    up and its reset has passed, one request probes it while the others wait for the answer.
    """

    def __init__(self, max_per_minute: int | None = None) -> None:
        super().__init__(max_per_minute)
        self._ready = threading.Condition(self._lock)
        self._in_flight: dict[int, float] = {}  # request number -> send time
        self._sequence = 0
        self._newest_answered = 0

    def acquire(self) -> float:
        started = self._clock()
        with self._ready:
            while (delay := self._delay(self._clock())) > 0:
                self._ready.wait(delay)
            now = self._clock()
            self._sequence += 1
            self._in_flight[self._sequence] = now
            self._local.sequence, self._local.sent_at = self._sequence, now
            self._sent.append(now)
            self._next_slot = now + self._spacing(now)
            if self._remaining is not None:
                self._remaining -= 1
        waited = self._clock() - started
        self.waited_seconds += waited
        return waited

    def _delay(self, now: float) -> float:
        """Seconds to wait before looking again (0: send now)."""
        for sequence, sent_at in list(self._in_flight.items()):
            if sent_at < now - IN_FLIGHT_EXPIRY:  # never answered nor failed: stop waiting for it
                del self._in_flight[sequence]
        budget_known = self._remaining is not None
        if self._in_flight and (not budget_known or (self._remaining <= 0 <= now - self._reset_at)):
            return 1.0  # an answer is due first (and wakes us up)
        at = max(now, self._next_slot, self._cap_slot(now), self._server_slot(now))
        return at - now

    def observe(self, headers: Mapping[str, str]) -> None:
        remaining = _int(headers.get("X-RateLimit-Remaining"))
        reset = _int(headers.get("X-RateLimit-Reset"))
        with self._ready:
            sequence = getattr(self._local, "sequence", 0)
            self._in_flight.pop(sequence, None)
            if remaining is not None and reset is not None:
                self._learn(headers, sequence, remaining, float(reset))
            self._ready.notify_all()

    def _learn(self, headers: Mapping[str, str], sequence: int, remaining: int, reset: float) -> None:
        self._limit = _int(headers.get("X-RateLimit-Limit")) or self._limit
        if "Retry-After" not in headers:  # a refused request takes no slot in the window
            self._count(getattr(self._local, "sent_at", self._clock()))
        if sequence < self._newest_answered:
            return  # a later request's answer already told us more
        self._newest_answered = sequence
        earlier = sum(1 for s in self._in_flight if s < sequence)  # in the window, not answered
        self._remaining = remaining - len(self._in_flight)
        self._reset_at = self._sharpen(reset, remaining + earlier)

    def _count(self, sent_at: float) -> None:
        """Keep the counted send times in send order, though answers come back out of order."""
        counted = self._counted
        index = len(counted)
        while index and counted[index - 1] > sent_at:
            index -= 1
        counted.insert(index, sent_at)
        while len(counted) > (self._limit or 1):
            counted.popleft()


def encode(value: t.Any) -> bytes:
    """JSON bytes of a message dict, like the SDK's encoder but fast."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. Decimal, int beyond 64 bits
        return serialize_json(value).encode()


def streams_to_sync(tap: Tap) -> list[Stream]:
    """The selected top-level streams, in the tap's order (canonical first, ops last)."""
    chosen = []
    for stream in tap.streams.values():
        if not stream.selected and not stream.has_selected_descendents:
            tap.logger.info("Skipping deselected stream '%s'.", stream.name)
        elif stream.parent_stream_type is None:
            chosen.append(stream)
    return chosen


def sync_concurrently(tap: Tap, streams: list[Stream], workers: int) -> None:
    """Sync `streams` on up to `workers` threads; the first failure stops new starts.

    Streams already running when one fails are let finish (as a sequential sync would have
    finished them), then the first error is raised. An interrupt of the main thread (SIGTERM,
    Ctrl-C) stops every thread at its next line of output instead.
    """
    for stream in streams:
        _ = stream.stream_state  # create every bookmark entry now, not while others serialise
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stream")
    futures: list[Future] = []
    failed = threading.Event()
    try:
        futures = [pool.submit(_sync_one, stream, failed) for stream in streams]
        wait(futures, return_when=FIRST_EXCEPTION)
    except BaseException:
        if isinstance(tap.message_writer, SerialSingerWriter):
            tap.message_writer.abort("the sync was interrupted")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # never start a stream after a failure
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
    if errors:
        raise errors[0]  # type: ignore[misc]


def _sync_one(stream: Stream, failed: threading.Event) -> None:
    if failed.is_set():
        return  # another stream failed before this one started: do not start it
    try:
        stream.sync()
        stream.finalize_state_progress_markers()
    except BaseException:
        failed.set()
        raise

"""SDK seam: `Tap.sync_all` (final in the SDK) replaced to sync several streams at once.

tests/unit/test_unit_sdk_seams.py pins the SDK's sequential `sync_all`, whose steps this repeats.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import typing as t
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from singer_sdk import Tap

from tap_apixx.output import SerialSingerWriter

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk import Stream

DEFAULT_MAX_PARALLEL_STREAMS = 4  # 4 x ~200 ms requests saturate 600/min; more only adds memory
GC_YOUNG_THRESHOLD = 5_000  # allocations between young collections during a sync (default 700)


class ParallelSync(Tap):
    """Tap mixin: `sync_all` runs up to `max_parallel_streams` streams at a time."""

    @property
    def parallel_streams(self) -> int:
        """The `max_parallel_streams` setting (1: one stream after another, as the SDK does)."""
        return int(self.config.get("max_parallel_streams", DEFAULT_MAX_PARALLEL_STREAMS))

    def sync_all(self) -> None:  # type: ignore[misc]  # final in the SDK: see the module doc
        """Sync the selected streams, up to `max_parallel_streams` at a time."""
        with quiet_collector():
            self._sync_all()

    def _sync_all(self) -> None:
        self.prepare_state()
        workers = self.parallel_streams
        self.before_sync()
        open_bookmarks(self)  # the first STATE below then carries every stream, unmoved
        if workers <= 1:
            super().sync_all()  # writes that first STATE too: the state is no longer empty
            return
        self._reset_state_progress_markers()
        self._set_compatible_replication_methods()
        if self.state:
            self._state_writer.write_state(self.state)
        self.before_parallel_sync()
        streams = sorted(streams_to_sync(self), key=lambda s: getattr(s, "sync_last", False))
        sync_concurrently(self, streams, min(workers, max(len(streams), 1)))
        for stream in self.streams.values():
            stream.log_sync_costs()

    def before_sync(self) -> None:
        """Run once at the start of each sync, before any stream, in both modes."""

    def before_parallel_sync(self) -> None:
        """Make here, once, whatever the stream threads share."""

    def prepare_state(self) -> None:
        """Ready the input state before the first STATE message (lifecycle.py: rewinds, windows)."""


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Fewer garbage collections while records stream through; undone afterwards.

    Parsing a page of 1000 records makes thousands of containers. At CPython's default (a young
    collection every 700 allocations) the collector ran about 500 times in a 200,000-record sync,
    rescanning the modules, schemas and catalog each time, and found nothing: records are freed
    by reference counting, they hold no cycles. So what exists before the sync is frozen out of
    every collection, and a young collection waits for GC_YOUNG_THRESHOLD allocations. (A
    connection reset leaves a cycle through its traceback that holds a page: a few such pages
    wait for the next collection, a bounded amount that does not grow with the sync.) A process
    that froze objects itself before (a host embedding the tap) keeps its own freeze: the sync
    then neither freezes nor thaws.
    """
    before = gc.get_threshold()
    ours = gc.get_freeze_count() == 0
    if ours:
        gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if ours:
            gc.unfreeze()


def open_bookmarks(tap: Tap) -> None:
    """Create each stream's bookmark entry, so that the sync's first STATE holds them all.

    A run without input state would otherwise write its first STATE after the first page of
    some stream, carrying that page's bookmark. Targets built like the Singer reference
    targets (pipelinewise; target-duckdb 0.8.0) take the first STATE they receive as already
    confirmed (`flushed_state`) and later emit it, with only the flushed streams updated:
    the page's bookmark would be confirmed while its records still wait in the target's
    batch, and a kill then loses that page. A first STATE written before any record, with
    every stream present but none moved, is safe to confirm; an empty `{}` would not do, as
    those targets skip a falsy state.
    """
    for stream in tap.streams.values():
        if (stream.selected or stream.has_selected_descendents) and not stream.parent_stream_type:
            _ = stream.stream_state


def streams_to_sync(tap: Tap) -> list[Stream]:
    """The selected top-level streams, in the tap's order."""
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

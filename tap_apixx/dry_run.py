"""`--test` that ends each stream cleanly once it has read the records the test asks for.

The SDK's connection test (`Tap.run_connection_test` -> `run_sync_dry_run`) sets each stream's
`ABORT_AT_RECORD_COUNT` to 1 and syncs it. When a stream yields one record more, the SDK's
`Stream._check_max_record_limit` raises `MaxRecordsLimitException` through `_abort_sync`
(as `AbortedSyncPausedException`). `Stream.sync` logs every exception crossing it as
"ERROR | An unhandled error occurred while syncing ..." before `run_sync_dry_run` swallows it:
one ERROR line per stream for a test that passed. Stopping the record iterator at the limit
means the stream simply finishes: the same records, and no ERROR. The bookmark does not move
(a page's bookmark is written only after all its records), so a test leaves state as it was.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk import Stream


def stop_after(stream: Stream, records: Iterable[dict[str, t.Any]], limit: int) -> Iterator[dict]:
    """Yield at most `limit` records, then close the source (no further request is sent)."""
    iterator = iter(records)
    count = 0
    try:
        for record in iterator:
            yield record
            count += 1
            if count >= limit:
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    stream.logger.info(
        "Stream '%s' answered: %d record(s) read (the test stops at %d).", stream.name, count, limit
    )

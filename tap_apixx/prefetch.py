"""The next page's request, sent while the current page is being written.

A page's records are framed and written by the tap while the server sits idle, and the server
builds the next page while the tap waits. Sending the next page's request once the page has
passed its checks (the paginator's and the schema's: the ones that can stop the sync) overlaps
the two. Requests of a stream stay one at a time and in order: the next request is only known
once the page before it has been read, so at most one is ever ahead. (Latency is not hidden
this way: one stream at 200 ms still gets at most 5 pages a second; concurrent streams cover
that.)

The request goes through the same `send` (pacer, retries, error policy) as any other; a failure
is raised where the answer is taken, after the page before it has been written and its STATE
emitted, exactly as if the request had been sent at that point.
"""

from __future__ import annotations

import threading
import typing as t

if t.TYPE_CHECKING:
    import requests

Send = t.Callable[[], "requests.Response"]


class NextPage:
    """At most one request in flight on a daemon thread; its answer (or error) taken once.

    Each request has its own result slot, so a request abandoned by a stopped sync can never
    write into the answer of a later one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._pending: tuple[threading.Thread, list[t.Any]] | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def start(self, send: Send) -> None:
        """Send in the background; `take` returns its answer."""
        if self._pending is not None:
            raise RuntimeError(f"{self.name}: a page request is already in flight")
        slot: list[t.Any] = []  # [answer, None] or [None, error], filled by the thread

        def run() -> None:
            try:
                slot.extend((send(), None))
            except BaseException as exc:  # noqa: BLE001 (re-raised by take, in the reading thread)
                slot.extend((None, exc))

        # daemon: a run stopped by a signal or an error never waits on a request in flight
        thread = threading.Thread(target=run, name=f"next-page-{self.name}", daemon=True)
        self._pending = (thread, slot)
        thread.start()

    def take(self) -> requests.Response:
        """The answer of the request started last, raising what sending it raised."""
        if self._pending is None:
            raise RuntimeError(f"{self.name}: no page request in flight")
        (thread, slot), self._pending = self._pending, None
        thread.join()
        answer, error = slot
        if error is not None:
            raise error
        return answer

    def abandon(self) -> None:
        """Forget a request in flight (the sync stopped early); its answer is never read."""
        self._pending = None

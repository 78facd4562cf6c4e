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
    """At most one request in flight on a daemon thread; its answer (or error) taken once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._answer: requests.Response | None = None
        self._error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return self._thread is not None

    def start(self, send: Send) -> None:
        """Send in the background; `take` returns its answer."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: a page request is already in flight")
        self._answer = self._error = None

        def run() -> None:
            try:
                self._answer = send()
            except BaseException as exc:  # noqa: BLE001 (re-raised by take, in the reading thread)
                self._error = exc

        # daemon: a run stopped by a signal or an error never waits on a request in flight
        self._thread = threading.Thread(target=run, name=f"next-page-{self.name}", daemon=True)
        self._thread.start()

    def take(self) -> requests.Response:
        """The answer of the request started last, raising what sending it raised."""
        thread, self._thread = self._thread, None
        if thread is None:
            raise RuntimeError(f"{self.name}: no page request in flight")
        thread.join()
        answer, error, self._answer, self._error = self._answer, self._error, None, None
        if error is not None:
            raise error
        assert answer is not None
        return answer

    def abandon(self) -> None:
        """Forget a request in flight (the sync stopped early); its answer is never read."""
        self._thread = None

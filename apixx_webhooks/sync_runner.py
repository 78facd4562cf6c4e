"""Run a sync command when matching webhook events arrive: debounced and single-flight."""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from apixx_webhooks.store import StoreError

log = logging.getLogger("apixx_webhooks.sync")

KNOWN_EVENTS = frozenset(
    {
        "run.started",
        "run.succeeded",
        "run.partial",
        "run.failed",
        "connector.degraded",
        "flow.paused",
    }
)
Runner = Callable[[Sequence[str]], int]
DEFAULT_DEBOUNCE_SECONDS = 2.0  # a burst of run events usually lands within a second
COMMAND_NOT_RUNNABLE = 127  # the shell's convention for "command not found"


def run_command(argv: Sequence[str]) -> int:
    """Run without a shell and return the exit code; a missing binary is an exit code too."""
    try:
        return subprocess.run(list(argv), check=False).returncode
    except OSError as exc:
        log.error("sync command could not start: %s", exc)
        return COMMAND_NOT_RUNNABLE


class PendingSyncs(Protocol):
    """Where sync requests outlive the process (the receiver's EventStore)."""

    def pending_sync(self) -> int | None: ...

    def clear_pending_sync(self, through: int) -> None: ...


@dataclass(frozen=True)
class SyncRun:
    started_at: float
    duration: float
    exit_code: int


class SyncTrigger:
    """Coalesces events into syncs: at most one runs at a time, and every burst of events
    that arrives while one runs (or during the debounce wait) causes exactly one more.

    With ``pending``, sync requests are durable: the caller records each one before calling
    ``notify`` (the receiver does it in the event's own transaction), a request is cleared only
    after a sync that started later has finished, and requests left by a process that died are
    run after the debounce when the next one starts.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        events: Iterable[str],
        debounce_seconds: float = DEFAULT_DEBOUNCE_SECONDS,
        runner: Runner = run_command,
        pending: PendingSyncs | None = None,
    ) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise ValueError("the sync command is empty")
        self.events = frozenset(events)
        self.debounce_seconds = debounce_seconds
        self.runs: list[SyncRun] = []
        self._runner = runner
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._stopping = False
        self._last_event_at = 0.0
        self._pending_store = pending
        self._covering: int | None = None  # newest durable request the running sync covers
        if pending is not None and pending.pending_sync() is not None:
            log.info("a sync requested before the last shutdown has not run yet: it will run")
            self._pending, self._last_event_at = True, time.monotonic()
        self._worker = threading.Thread(target=self._work, name="sync-trigger", daemon=True)
        self._worker.start()

    def matches(self, event_type: str) -> bool:
        return event_type in self.events or "*" in self.events

    def notify(self, event_type: str) -> bool:
        """Record a stored event; returns True when it will lead to a sync."""
        if not self.matches(event_type):
            return False
        with self._cond:
            self._pending = True
            self._last_event_at = time.monotonic()
            self._cond.notify_all()
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or running (for tests and orderly shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._pending or self._running), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop scheduling; a sync already running is waited for up to ``timeout``."""
        with self._cond:
            if self._pending:
                later = "runs at the next start" if self._pending_store else "will not run"
                log.warning("shutting down: a pending sync %s", later)
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(timeout)

    def _next_due(self) -> bool:
        """Wait (lock held) for a pending event followed by a quiet debounce period."""
        while not self._stopping:
            if not self._pending:
                self._cond.wait()
                continue
            quiet_left = self._last_event_at + self.debounce_seconds - time.monotonic()
            if quiet_left <= 0:
                self._pending, self._running = False, True
                self._covering = self._newest_request()
                return True
            self._cond.wait(quiet_left)
        return False

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._next_due():
                    return
            try:
                self._run_once()
                self._clear_covered()
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _newest_request(self) -> int | None:
        if self._pending_store is None:
            return None
        try:
            return self._pending_store.pending_sync()
        except StoreError as exc:  # the sync still runs; its request is simply not cleared
            log.error("cannot read pending syncs: %s", exc)
            return None

    def _clear_covered(self) -> None:
        if self._pending_store is None or self._covering is None:
            return
        try:
            self._pending_store.clear_pending_sync(self._covering)
        except StoreError as exc:  # worst case the sync runs once more after a restart
            log.error("cannot clear pending syncs: %s", exc)

    def _run_once(self) -> None:
        log.info("sync starting: %s", shlex.join(self.argv))
        started_wall, started = time.time(), time.monotonic()
        try:
            exit_code = self._runner(self.argv)
        except Exception:  # a broken runner must not kill the worker thread or the server
            log.exception("sync runner raised")
            exit_code = -1
        duration = time.monotonic() - started
        self.runs.append(SyncRun(started_wall, duration, exit_code))
        level = logging.INFO if exit_code == 0 else logging.ERROR
        log.log(level, "sync finished: exit code %s after %.1fs", exit_code, duration)

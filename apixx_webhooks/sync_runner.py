"""Run a sync command when matching webhook events arrive: debounced and single-flight."""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger("apixx_webhooks.sync")

KNOWN_EVENTS = frozenset({
    "run.started", "run.succeeded", "run.partial", "run.failed",
    "connector.degraded", "flow.paused",
})
Runner = Callable[[Sequence[str]], int]
COMMAND_NOT_RUNNABLE = 127  # the shell's convention for "command not found"


def run_command(argv: Sequence[str]) -> int:
    """Run without a shell and return the exit code; a missing binary is an exit code too."""
    try:
        return subprocess.run(list(argv), check=False).returncode
    except OSError as exc:
        log.error("sync command could not start: %s", exc)
        return COMMAND_NOT_RUNNABLE


@dataclass(frozen=True)
class SyncRun:
    started_at: float
    duration: float
    exit_code: int


class SyncTrigger:
    """Coalesces events into syncs: at most one runs at a time, and every burst of events
    that arrives while one runs (or during the debounce wait) causes exactly one more."""

    def __init__(
        self,
        command: str | Sequence[str],
        events: Iterable[str],
        debounce_seconds: float = 2.0,
        runner: Runner = run_command,
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
                log.warning("shutting down: a pending sync will not run")
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
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

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

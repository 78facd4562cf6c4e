"""RatePacer: one request budget per API key, fed by the X-RateLimit-* headers, thread-safe.

The headers are advice, not orders: a value that makes no sense (negative, NaN, a reset given
in epoch milliseconds or a year away) is read sensibly or ignored, no single wait is longer
than `max_wait` (the `max_rate_limit_wait` setting), and the tap says what it waits for.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import typing as t
from collections import deque
from datetime import timezone
from email.utils import parsedate_to_datetime

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

WINDOW_SECONDS = 60.0  # the server's sliding window (reads: 600 per key per minute)
LOW_WATER = 0.10  # start spreading requests when under this share of the limit remains
MIN_LOW_WATER = 5  # ... or under this many requests, whichever is larger
# margin when timing a slot from our own send times: the server counts a request when it
# arrives, which on a busy machine can be a few hundred ms after we took its slot (0.1 s let
# one 429 through in a test suite running on 2 cores); at a 60 s window it costs under 1%
SAFETY_SECONDS = 0.5
IN_FLIGHT_EXPIRY = 60.0  # seconds after which a request neither answered nor failed is forgotten
ANSWER_WAIT_SECONDS = 1.0  # longest wait for an answer due before looking again
DEFAULT_MAX_WAIT = 900.0  # the longest single wait the headers may impose (a setting)
SAY_WAIT_SECONDS = 1.0  # waits at least this long are explained in the log ...
SAY_EVERY_SECONDS = 1800.0  # ... once per reason per half hour, never once per request
EPOCH_MS_FROM = 1e11  # a unix time above this is in milliseconds (1e11 s is the year 5138)
DELTA_UNTIL = 1e9  # a reset below this counts seconds from now (1e9 s is the year 2001)
MAX_RESET_AHEAD = 366 * 86400.0  # a reset further away than this is nonsense: clamped
NUMBER = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")
SIGNED_INT = re.compile(r"[+-]?[0-9]{1,15}")


class Logger(t.Protocol):
    def log(self, level: int, msg: str, *args: t.Any) -> None: ...


def parse_count(value: str | None) -> int | None:
    """X-RateLimit-Remaining/-Limit: an integer; a negative one is clamped to 0, junk is None."""
    text = (value or "").strip()
    return max(int(text), 0) if SIGNED_INT.fullmatch(text) else None


def parse_reset(value: str | None, now: float) -> float | None:
    """X-RateLimit-Reset as a unix time no earlier than `now`, or None when it makes no sense.

    Read as unix seconds, as documented; as milliseconds when that large; as seconds from now
    when that small (some APIs send a delta). Negative, NaN or junk: None. More than a year
    away: a year (the pacer caps any single wait at max_wait anyway).
    """
    text = (value or "").strip()
    if not NUMBER.fullmatch(text):
        return None
    number = float(text)
    if number >= EPOCH_MS_FROM:
        number /= 1000.0
    elif number < DELTA_UNTIL <= now:
        number += now
    return min(max(number, now), now + MAX_RESET_AHEAD)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After in seconds from `now`: delay-seconds or an HTTP date (RFC 9110); else None."""
    text = (value or "").strip()
    if NUMBER.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000": UTC by another name
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class RatePacer:
    """Spaces requests, from one thread or many, so that a steady-state sync never meets a 429.

    The server tells us, on every response, how many requests remain in its window and when
    the oldest one leaves it. While plenty remain we go flat out; when few remain we spread
    them evenly until the reset; at zero we wait for the reset. An optional client-side cap
    (`max_per_minute`) keeps a sliding window of our own, so several jobs can share one key.

    Several threads may send at once. An answer's X-RateLimit-Remaining does not count the
    requests still in flight, and an answer may arrive after that of a request sent later.
    So: only the answer to the latest request sent updates the budget, every request still in
    flight is taken off it (some may already be counted: that only costs a slot or two), and
    when the budget is unknown or used up and its reset has passed, one request probes it while
    the others wait for the answer. Every `acquire` must be followed by an `observe` from the
    same thread (with empty headers when the request failed).
    """

    def __init__(
        self,
        max_per_minute: int | None = None,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        logger: Logger | None = None,
    ) -> None:
        self.max_per_minute = max_per_minute
        self.max_wait = max_wait
        self._logger = logger
        self._said: dict[str, float] = {}  # reason -> when it was last explained
        self._clock = clock
        self._sleep = sleep  # None: wait on the condition, woken early by each answer
        self._ready = threading.Condition()  # guards every field below
        self._sent: deque[float] = deque()  # our own send times, for the client-side cap
        self._remaining: int | None = None  # server's view, decremented as we send
        self._limit: int | None = None
        self._reset_at = 0.0
        self._next_slot = 0.0  # earliest time the next request may go out
        self._counted: deque[float] = deque()  # send times of our requests the server counted
        self._window = float("inf")  # the server's window length, learned from the headers
        self._in_flight: dict[int, float] = {}  # request number -> send time
        self._sequence = 0  # number of the latest request sent
        self._newest_answered = 0  # number of the latest request whose answer we used
        self._local = threading.local()  # this thread's request: number and send time
        self.waited_seconds = 0.0

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        started = self._clock()
        with self._ready:
            while (delay := self._delay(self._clock())) > 0:
                self._wait(delay)
            self._take_slot(self._clock())
            waited = self._clock() - started
            self.waited_seconds += waited
        return waited

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the server's budget from a response's X-RateLimit-* headers (may be empty)."""
        remaining = parse_count(headers.get("X-RateLimit-Remaining"))
        reset = parse_reset(headers.get("X-RateLimit-Reset"), self._clock())
        with self._ready:
            sequence = getattr(self._local, "sequence", 0)
            self._in_flight.pop(sequence, None)
            if remaining is not None and reset is not None:
                self._learn(headers, sequence, remaining, reset)
            self._ready.notify_all()

    def _wait(self, seconds: float) -> None:
        """Wait with the lock released: on the condition, or with the injected sleep."""
        if self._sleep is None:
            self._ready.wait(seconds)
            return
        self._ready.release()
        try:
            self._sleep(seconds)
        finally:
            self._ready.acquire()

    def _delay(self, now: float) -> float:
        """Seconds to wait before looking again (0: send now)."""
        for sequence, sent_at in list(self._in_flight.items()):
            if sent_at < now - IN_FLIGHT_EXPIRY:  # never answered nor failed: stop waiting for it
                del self._in_flight[sequence]
        if self._in_flight and self._budget_unknown(now):
            return ANSWER_WAIT_SECONDS  # an answer is due first (and wakes us up)
        return self._slot(now) - now

    def _slot(self, now: float) -> float:
        """When the next request may go: the latest of every limit, but never beyond max_wait."""
        server, spaced, capped = self._server_slot(now), self._next_slot, self._cap_slot(now)
        at = max(now, server, spaced, capped)
        if at - now > self.max_wait:
            self._say(
                "ceiling",
                logging.WARNING,
                "Rate limit: X-RateLimit-Remaining is %s and the "
                "reset (X-RateLimit-Reset) is %.0f s away, beyond max_rate_limit_wait "
                "(%.0f s): waiting %.0f s, then trying anyway (the headers are advice; a "
                "429 is not)",
                self._remaining,
                self._reset_at - now,
                self.max_wait,
                self.max_wait,
            )
            at = now + self.max_wait
            self._reset_at, self._next_slot = min(self._reset_at, at), min(self._next_slot, at)
        elif at - now >= SAY_WAIT_SECONDS:
            self._explain(now, at, server, spaced)
        return at

    def _explain(self, now: float, at: float, server: float, spaced: float) -> None:
        if at == server:
            self._say(
                "reset",
                logging.INFO,
                "Rate limit: no requests left in the window "
                "(X-RateLimit-Remaining %s); waiting %.1f s for its reset "
                "(X-RateLimit-Reset)",
                self._remaining,
                at - now,
            )
        elif at == spaced:
            self._say(
                "spacing",
                logging.INFO,
                "Rate limit: %s requests left until the reset in "
                "%.0f s (X-RateLimit-*); spacing requests %.1f s apart",
                self._remaining,
                self._reset_at - now,
                at - now,
            )
        else:
            self._say(
                "cap",
                logging.INFO,
                "Pacing to max_requests_per_minute=%s: waiting %.1f s",
                self.max_per_minute,
                at - now,
            )

    def _say(self, reason: str, level: int, message: str, *args: t.Any) -> None:
        """Log why we wait: once per reason per SAY_EVERY_SECONDS, not once per request."""
        now = self._clock()
        if self._logger is None or now - self._said.get(reason, -math.inf) < SAY_EVERY_SECONDS:
            return
        self._said[reason] = now
        self._logger.log(level, message, *args)

    def _budget_unknown(self, now: float) -> bool:
        """Never learned, or used up with its reset passed: the next answer tells us anew."""
        if self._remaining is None:
            return True
        return self._remaining <= 0 <= now - self._reset_at

    def _take_slot(self, now: float) -> None:
        self._sequence += 1
        self._in_flight[self._sequence] = now
        self._local.sequence, self._local.sent_at = self._sequence, now
        self._sent.append(now)
        self._next_slot = now + self._spacing(now)
        if self._remaining is not None:
            self._remaining -= 1

    def _learn(
        self, headers: Mapping[str, str], sequence: int, remaining: int, reset: float
    ) -> None:
        self._limit = parse_count(headers.get("X-RateLimit-Limit")) or self._limit
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

    def _sharpen(self, reset: float, remaining: int) -> float:
        """The header's reset is whole seconds, rounded up: up to 1 s late, which wastes ~1% of
        a 60 s window (and 20% of a short one). The oldest request in the server's window is
        our (limit - remaining)-th latest counted one; it leaves `window` seconds after we sent
        it, where `window` is the least (reset - that send time) seen so far. Trusted only when
        it agrees with the header (another client on the key would make it disagree)."""
        used = (self._limit or 0) - remaining
        if not 0 < used <= len(self._counted):
            return reset
        oldest = self._counted[-used]
        self._window = min(self._window, reset - oldest)
        precise = oldest + self._window + SAFETY_SECONDS
        return min(precise, reset) if reset - 1.0 <= precise else reset

    def _cap_slot(self, now: float) -> float:
        """Earliest send time allowed by our own sliding-window cap."""
        sent = self._sent
        while sent and sent[0] <= now - WINDOW_SECONDS:
            sent.popleft()
        if not self.max_per_minute or len(sent) < self.max_per_minute:
            return now
        return sent[len(sent) - self.max_per_minute] + WINDOW_SECONDS

    def _server_slot(self, now: float) -> float:
        """Earliest send time allowed by the server's remaining budget."""
        if self._remaining is None or self._remaining > 0 or now >= self._reset_at:
            return now
        return self._reset_at

    def _spacing(self, at: float) -> float:
        """Gap to leave after a request sent at `at`: none while the budget is ample."""
        if self._remaining is None or self._limit is None or at >= self._reset_at:
            return 0.0
        low_water = max(MIN_LOW_WATER, int(self._limit * LOW_WATER))
        if self._remaining > low_water:
            return 0.0
        return (self._reset_at - at) / max(self._remaining, 1)

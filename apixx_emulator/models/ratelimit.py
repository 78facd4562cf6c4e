"""Rate limits: sliding windows per key and bucket (reads, writes, triggers)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 60  # the documented sliding window
MAX_RATE_LIMIT = 10**9  # requests per window a limit may allow


@dataclass
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0


class RateLimiter:
    """Sliding 60-second windows per (key, bucket)."""

    def __init__(self, limits: dict[str, int], window: float = WINDOW_SECONDS):
        self.limits = dict(limits)
        self.window = window
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, bucket: str, now: float | None = None) -> RateDecision:
        now = time.time() if now is None else now
        limit = self.limits[bucket]
        with self._lock:
            window = self._windows.setdefault((key_id, bucket), deque())
            while window and window[0] <= now - self.window:
                window.popleft()
            if len(window) >= limit:
                reset = window[0] + self.window
                return RateDecision(False, limit, 0, math.ceil(reset), max(1, math.ceil(reset - now)))
            window.append(now)
            return RateDecision(True, limit, limit - len(window), math.ceil(window[0] + self.window))

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


def bucket_for(method: str, path: str) -> str:
    if method == "GET" or method == "HEAD":
        return "read"
    if method == "POST" and path.rstrip("/").endswith("/trigger"):
        return "trigger"
    return "write"
